#pragma once
// The resolved experiment config. src/train/config_load.* fills these from YAML (strict: unknown keys,
// wrong types and impossible shapes are errors naming file, line, key and the allowed values).
// 0 in a size field means "derive the default" (see resolve()). The model's part (ModelConfig, the
// blocks' configs and resolve()) is in layers/block_config.h, where the blocks that read it live.
#include <cstdint>
#include <string>

#include "layers/block_config.h"

namespace strata {

struct TrainConfig {
  int64_t steps = 1000;
  int batch = 16;
  int seq = 128;
  int grad_accum = 1;
  std::string precision = "fp32";  // fp32 | bf16 (layers/linear.h: bf16 GEMM operands, fp32 master weights)
  uint64_t seed = 1;
  int eval_every = 100;
  int eval_batches = 8;
  int save_every = 200;
  int keep_checkpoints = 3;
  int log_every = 10;
  std::string device = "cpu";
  std::string run_dir = "";  // "" -> runs/<config file stem>
  int max_nonfinite_steps = 10;  // non-finite loss/grad-norm steps in a row (each skipped) that stop the run
  // Data parallelism (mpirun / srun; train/distributed.h): ignored by a single process.
  float dist_bucket_mb = 0.5f;    // gradient bucket size of the all-reduce (small: CPU models are small)
  bool dist_overlap = true;       // start a bucket's all-reduce during backward, as soon as it is final
  float dist_timeout_s = 600.0f;  // a collective unfinished after this long aborts the job (a rank died or hangs)
  bool dist_zero1 = false;        // ZeRO-1: each rank keeps the AdamW moments of its shard of the parameters only
};

struct OptimConfig {
  float lr = 1e-3f;
  float min_lr_ratio = 0.1f;
  int64_t warmup = 100;
  std::string schedule = "cosine";  // cosine | constant
  float weight_decay = 0.1f;
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  float clip = 1.0f;  // max global grad norm; 0 -> off
};

// The synthetic tasks (train/synthetic_*.h): sequences generated on the fly from the run's seed, with
// targets only at the tested positions (-1 elsewhere). train.seq is their length.
struct MqarConfig {  // Zoology's multi-query associative recall
  int vocab = 8192;       // keys from [1, vocab / 2), values from [vocab / 2, vocab)
  int pairs = 8;          // key-value pairs at the start of each sequence
  int queries = 0;        // keys queried again later (0 = pairs: every key, as Zoology)
  float power_a = 0.01f;  // query gaps drawn with probability ~ gap^(power_a - 1) (1 = uniform)
};

struct SelectiveCopyingConfig {  // the Mamba paper's selective copying
  int vocab = 16;        // the noise token, vocab - 1 (the copy marker) and vocab - 2 data symbols
  int tokens = 16;       // data tokens scattered in the noise, to be copied in order
  int noise_token = 0;
};

struct InductionHeadsConfig {  // the Mamba paper's induction heads
  int vocab = 16;
  int trigger = -1;  // the special token (-1 = vocab - 1)
};

struct DataConfig {
  std::string kind = "text";  // text (byte-level) | mqar | selective_copying | induction_heads
  std::string path = "";
  float val_fraction = 0.05f;
  std::string eval_seqs = "";  // synthetic kinds: further lengths the accuracy is measured at ("256 1024")
  MqarConfig mqar;
  SelectiveCopyingConfig selective_copying;
  InductionHeadsConfig induction_heads;
};

// The robot policy (models/multirate.h): a planner at planner_hz and a controller at control_hz,
// trained together on robomimic episodes (train/robot_trainer.h). Their blocks take their settings
// (heads, Mamba state, MLP width) from the model section; each half has its own pattern and width.
// An empty planner.pattern means "no robot section": the config is a language model's.
struct RobotNetConfig {
  std::string pattern = "";  // planner: "" = no robot policy; controller: e.g. "M" or "-"
  int d_model = 64;
  int repeat = 1;
};

struct RobotDataConfig {
  std::string path = "";      // robomimic HDF5 episodes (train/episodes.h)
  std::string obs_keys = "";  // space-separated observation keys; "" = every key of the file
  float val_fraction = 0.1f;  // episodes held out for validation
};

struct RobotConfig {
  RobotNetConfig planner;
  RobotNetConfig controller{"-", 32, 1};
  int planner_hz = 10;
  int control_hz = 100;  // a multiple of planner_hz: the ratio is planner ticks per control tick
  std::string handoff = "hold";  // hold | ensemble | rtc (infer/realtime/handoff.h)
  int chunk = 16;   // K: actions per planner chunk (0 = the planner outputs only the latent)
  int latent = 32;  // P: plan latent width (0 = the planner outputs only the chunk)
  int planner_delay_ticks = 0;  // control ticks between a plan's observation and its use, in training
  std::string loss = "l1";      // l1 | mse
  int window = 64;  // control ticks per training segment
  RobotDataConfig data;
  bool enabled() const { return !planner.pattern.empty(); }
  int ratio() const { return planner_hz > 0 ? control_hz / planner_hz : 1; }
};

struct Config {
  ModelConfig model;
  RobotConfig robot;
  TrainConfig train;
  OptimConfig optim;
  DataConfig data;
  std::string source_path;  // the YAML file it came from
};

}  // namespace strata
