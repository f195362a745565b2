#pragma once
// The training loop: AdamW over the model's flat parameter buffer, warmup + cosine schedule,
// gradient clipping and accumulation, periodic evaluation, metrics (JSONL + TensorBoard),
// checkpoints in the run directory, and resume that continues bit-exactly.
#include <cstdint>
#include <string>
#include <vector>

#include "models/config.h"

namespace strata {

struct TrainOptions {
  bool resume = false;       // continue from the newest good checkpoint in the run dir
  int64_t stop_after = -1;   // stop (saving a checkpoint) after this many steps in this invocation
  bool quiet = false;
  // Config keys reported to TensorBoard's HPARAMS tab (empty: default_hparam_keys()); a sweep passes
  // its swept keys. hparams_group groups the sessions there (a sweep's name).
  std::vector<std::string> hparams;
  std::string hparams_group;
};

struct TrainResult {
  int64_t step = 0;            // optimizer steps completed
  float train_loss = 0, val_loss = -1;
  float val_acc = -1;          // synthetic tasks: accuracy at train.seq at the last evaluation
  bool interrupted = false;    // SIGINT/SIGTERM: a checkpoint was saved
  std::string run_dir, last_checkpoint;
  double seconds = 0, tokens_per_s = 0;
  int rank = 0, world_size = 1;  // data parallel (train/distributed.h): this process of how many
};

TrainResult train(const Config& cfg, const std::string& config_yaml, const TrainOptions& opts);

// The run directory a config trains into: train.run_dir, or runs/<config file stem>.
std::string run_dir_for(const Config& cfg);

}  // namespace strata
