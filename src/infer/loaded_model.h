#pragma once
// A model ready to run, with what inference needs besides the weights: its config, its vocabulary
// (tokenizer or bytes) and end-of-sequence ids. A plain holder: the Hugging Face importer
// (interop/) fills one and the exporter reads one, so it lives here, below interop; reading one
// from a path (a checkpoint or a Hugging Face directory) is load/model_loader.h, above both.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

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
  std::string tokenizer_config_json;  // its tokenizer_config.json ("" when none): chat template, special tokens
  std::shared_ptr<const Tokenizer> tokenizer;  // set iff config.model.vocab == "tokenizer"
  std::vector<int32_t> eos_ids;                // end-of-sequence ids from the HF config (may be empty)
};

// Fills the tokenizer and eos ids of lm from its tokenizer_json / hf_config_json and config.
void attach_vocab(LoadedModel& lm, const std::string& where);

std::vector<int32_t> encode_bytes(const std::string& text);
std::string decode_bytes(const std::vector<int32_t>& ids);
// Text <-> ids through the model's vocabulary: its tokenizer (with its special tokens, e.g. BOS), or
// bytes. A model without either (vocab: ids) takes and gives ids only: InputError.
std::vector<int32_t> encode_text(const LoadedModel& lm, const std::string& text);
std::string decode_text(const LoadedModel& lm, const std::vector<int32_t>& ids);

}  // namespace strata
