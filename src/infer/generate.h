#pragma once
// Text in, text out over a trained model: prefill with forward (filling the caches), then one
// step per token. Also per-position scoring, by forward or by token-by-token decode, so that
// train/infer parity can be checked from outside the code. Loading a model from a path is
// load/model_loader.h; text <-> ids through a model's vocabulary is infer/loaded_model.h.
#include <functional>
#include <string>
#include <vector>

#include "infer/decoder.h"
#include "infer/sampler.h"
#include "models/model.h"

namespace strata {

struct GenerateOptions {
  int max_tokens = 200;
  SamplerConfig sampler;
  uint64_t seed = 0;
  std::vector<int32_t> stop_ids;  // generation ends after emitting one of these (e.g. EOS)
  DecoderOptions decoder;         // CUDA graphs on/off
};
// Returns the generated ids (prompt excluded); on_token is called with each new token as it comes.
// Runs where the model's parameters are (model.params().device()).
std::vector<int32_t> generate(Model& model, const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                              const std::function<void(int32_t)>& on_token = nullptr);

enum class ScoreMode { forward, decode };
// logits[T, V] for every position of `ids`, computed by the training forward or by T decode steps.
std::vector<float> score(Model& model, const std::vector<int32_t>& ids, ScoreMode mode,
                         const DecoderOptions& opts = {});

// Writes a float32 .npy array of the given shape.
void write_npy(const std::string& path, const std::vector<float>& data, const std::vector<int64_t>& shape);

}  // namespace strata
