#pragma once
// `strata inspect`: lives with the CLI because it reads configs (train/), checkpoints and Hugging
// Face directories (load/), above every library layer.
#include <cstdint>
#include <string>

#include "models/model.h"

namespace strata {

// The layer table of a model: kind, parameters, forward FLOPs per token at context T, and cache
// bytes per token (KV) and per sequence (SSM/conv state), with totals.
std::string inspect_model(const Model& model, int64_t T);
// `path` is a YAML config or a checkpoint; T = 0 uses the config's train.seq.
std::string inspect_report(const std::string& path, int64_t T);

}  // namespace strata
