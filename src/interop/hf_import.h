#pragma once
// Reading a Hugging Face model directory (config.json, model.safetensors or shards, tokenizer.json)
// into a strata model, without Python. Strict: the config is mapped by hf_config (features strata
// lacks are refused by name), every strata parameter must be found with its shape, and every tensor
// of the checkpoint must land somewhere (a leftover, e.g. a bias the config did not announce, is an
// error naming it), except RoPE buffers and the like, which transformers skips too.
#include <functional>
#include <string>
#include <vector>

#include "infer/loaded_model.h"
#include "interop/hf_config.h"
#include "models/model.h"
#include "train/checkpoint.h"

namespace strata {

using HfLog = std::function<void(const std::string&)>;  // progress and notes, one line each; may be null

// A directory with a config.json (what `strata import hf` and every checkpoint argument accept).
bool is_hf_model_dir(const std::string& path);

struct HfDir {
  std::string dir;
  HfConfig hf;                 // architecture, mapped model config (vocab: tokenizer | ids), notes
  std::string config_json;     // config.json as read
  std::string tokenizer_json;  // tokenizer.json as read; "" when the directory has none
  std::string tokenizer_config_json;  // tokenizer_config.json as read, with chat_template.jinja (when
                                      // present) as its chat_template; "" when neither is there
};
// Reads and maps config.json, and tokenizer.json when present (a tokenizer strata cannot run, or
// one with more ids than the embedding, is kept for export but not used: vocab stays "ids", with a note).
HfDir read_hf_dir(const std::string& dir);

// Fills every parameter of `model` (built from d.hf.model) from the directory's safetensors.
void load_hf_weights(const HfDir& d, Model& model, const HfLog& log = nullptr);

// The model of an HF directory, ready for generate / score / inspect (import on the fly).
LoadedModel load_hf_model(const std::string& dir, const HfLog& log = nullptr);

// A weights-only strata checkpoint (no optimizer state, step 0) holding the mapped config, the
// parameters, tokenizer.json and config.json.
Checkpoint import_hf(const std::string& dir, const HfLog& log = nullptr);
// The same, written straight from the model's parameter buffer to `path` (no copy of the weights).
void save_weights_only(const LoadedModel& lm, const std::string& path);

}  // namespace strata
