#pragma once
// Text in, text out over a trained model: prefill with forward (filling the caches), then one
// step per token. Also per-position scoring, by forward or by token-by-token decode, so that
// train/infer parity can be checked from outside the code.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "infer/sampler.h"
#include "models/config.h"
#include "models/model.h"

namespace strata {

struct LoadedModel {
  Config config;
  std::unique_ptr<Model> model;
  int64_t step = 0;  // training step of the checkpoint
};
// Loads a checkpoint written by `strata train` (verifying it) and builds its model.
LoadedModel load_model(const std::string& ckpt_path);

std::vector<int32_t> encode_bytes(const std::string& text);
std::string decode_bytes(const std::vector<int32_t>& ids);

struct GenerateOptions {
  int max_tokens = 200;
  SamplerConfig sampler;
  uint64_t seed = 0;
};
// Returns the generated ids (prompt excluded); on_token is called with each new token as it comes.
std::vector<int32_t> generate(Model& model, const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                              const std::function<void(int32_t)>& on_token = nullptr);

enum class ScoreMode { forward, decode };
// logits[T, V] for every position of `ids`, computed by the training forward or by T decode steps.
std::vector<float> score(Model& model, const std::vector<int32_t>& ids, ScoreMode mode);

// Writes a float32 .npy array of the given shape.
void write_npy(const std::string& path, const std::vector<float>& data, const std::vector<int64_t>& shape);

}  // namespace strata
