#pragma once
// Hugging Face config.json <-> strata ModelConfig, for LlamaForCausalLM, MixtralForCausalLM,
// MambaForCausalLM, Mamba2ForCausalLM, JambaForCausalLM and DeepseekV3ForCausalLM (dense layers).
//
// Import is strict: an unknown architecture, or a feature strata does not implement (attention or
// MLP biases, sliding windows, unsupported RoPE scaling, quantized weights, DeepSeek MoE layers...),
// is an InputError naming the config key, its value and the reason. Keys that do not change the
// math (token ids, dropout, init ranges, kernel choices) are accepted and listed in `notes`, and so
// are keys this importer does not know, so that nothing is dropped without a word.
// Export is the reverse, refusing (by name) a strata model no architecture expresses.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "interop/hf_arch.h"
#include "models/config.h"

namespace strata {

struct HfConfig {
  HfArch arch = HfArch::llama;
  ModelConfig model;  // resolved; vocab is left "ids" (the importer sets "tokenizer" when it has one)
  int layers = 0;     // num_hidden_layers
  std::vector<std::string> notes;  // "key: why it does not matter" and "key: unknown, ignored"
};

// config.json text -> JSON. Accepts the non-standard Infinity / -Infinity / NaN literals that
// Python's json module writes (older Mamba-2 configs have "time_step_limit": [0.0, Infinity]), and
// transformers 5's {"__float__": "Infinity"}. `what` names the file in errors.
nlohmann::json parse_hf_json(const std::string& text, const std::string& what);

HfConfig hf_config_from_json(const nlohmann::json& cfg, const std::string& what);

// The architecture a strata model exports as: `hint` (where it was imported from) when it still fits,
// else the first one that expresses it; InputError listing, per architecture, why it does not fit.
HfArch hf_arch_for(const ModelConfig& m, std::optional<HfArch> hint = std::nullopt);

// config.json of `m` as `arch` (InputError when arch cannot express m). `base` (the config.json it
// was imported from, or null) supplies the keys strata does not model (token ids, context length,
// ...); every key strata does model is written from `m`. `dtype` is the torch dtype name of the
// weights written ("float32", "bfloat16", "float16").
nlohmann::json hf_config_to_json(const ModelConfig& m, HfArch arch, const nlohmann::json& base,
                                 const std::string& dtype = "float32");

}  // namespace strata
