#pragma once
// Text in, text out over a trained model: prefill with forward (filling the caches), then one
// step per token. Also per-position scoring, by forward or by token-by-token decode, so that
// train/infer parity can be checked from outside the code.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "infer/decoder.h"
#include "infer/sampler.h"
#include "infer/tokenizer.h"
#include "models/config.h"
#include "models/model.h"

namespace strata {

struct LoadedModel {
  Config config;
  std::unique_ptr<Model> model;
  int64_t step = 0;  // training step of the checkpoint
  std::string tokenizer_json;  // the stored tokenizer.json ("" when none)
  std::string hf_config_json;  // the Hugging Face config.json it was imported from ("" when none)
  std::shared_ptr<const Tokenizer> tokenizer;  // set iff config.model.vocab == "tokenizer"
  std::vector<int32_t> eos_ids;                // end-of-sequence ids from the HF config (may be empty)
};
// Loads a strata checkpoint (verifying it), or a Hugging Face model directory (imported on the fly,
// see interop/hf_import.h), and builds its model.
LoadedModel load_model(const std::string& path);

std::vector<int32_t> encode_bytes(const std::string& text);
std::string decode_bytes(const std::vector<int32_t>& ids);
// Text <-> ids through the model's vocabulary: its tokenizer (with its special tokens, e.g. BOS), or
// bytes. A model without either (vocab: ids) takes and gives ids only: InputError.
std::vector<int32_t> encode_text(const LoadedModel& lm, const std::string& text);
std::string decode_text(const LoadedModel& lm, const std::vector<int32_t>& ids);
// Fills the tokenizer and eos ids of lm from its tokenizer_json / hf_config_json and config.
void attach_vocab(LoadedModel& lm, const std::string& where);

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
