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

struct DataConfig {
  std::string kind = "text";  // text (byte-level)
  std::string path = "";
  float val_fraction = 0.05f;
};

struct Config {
  ModelConfig model;
  TrainConfig train;
  OptimConfig optim;
  DataConfig data;
  std::string source_path;  // the YAML file it came from
};

}  // namespace strata
