#pragma once
// Training of a config's robot policy (models/multirate.h) on an episodes file: the language
// trainer's machinery (AdamW over one ParamStore, warmup + cosine schedule, clipping, gradient
// accumulation, metrics.jsonl + TensorBoard, progress bar, checkpoints in the run directory, resume
// that continues bit-exactly, SIGINT/SIGTERM save and stop). train() calls it for a config whose
// robot section is enabled. Checkpoints hold both halves ("planner.*", "controller.*"), the
// normalisation statistics (/norm_stats) and the config with its robot section.
// train.batch is segments per micro-batch; robot.window is their length in control ticks
// (train.seq is not used). Val loss is over the episodes of the val split.
#include <memory>
#include <string>

#include "models/multirate.h"
#include "train/episodes.h"
#include "train/trainer.h"

namespace strata {

TrainResult train_robot(const Config& cfg, const std::string& config_yaml, const TrainOptions& opts);

// A trained policy as a run-time user needs it: its config, the model and the statistics its
// inputs must be normalised with (and its outputs unnormalised with).
struct LoadedRobot {
  Config config;
  NormStats stats;
  std::unique_ptr<MultiRatePolicy> policy;
};
// Throws InputError when the checkpoint has no robot section or no /norm_stats.
LoadedRobot load_robot(const std::string& checkpoint_path);

}  // namespace strata
