#pragma once
// The small models that the model-level tests (parity, prefill, bf16, decoder, CUDA) build: every
// block kind at sizes a test runs in milliseconds, and random byte-range token ids.
#include <string>
#include <vector>

#include "core/rng.h"
#include "models/config.h"

namespace strata::testing {

// pattern over the blocks, Mamba version, attention kind ("gqa" or "mla", DeepSeek-V3 shaped:
// compressed queries, interleaved RoPE). width scales every size (1: d_model 32).
inline ModelConfig tiny_model(const std::string& pattern, int mamba_version = 2, const std::string& attention = "gqa",
                              int width = 1) {
  ModelConfig c;
  c.d_model = 32 * width;
  c.pattern = pattern;
  c.repeat = 1;
  c.attention.heads = 4;
  c.attention.kv_heads = 2;
  c.mamba.version = mamba_version;
  c.mamba.d_state = 8 * width;
  c.mamba.head_dim = 16 * width;
  c.mamba.chunk = 8 * width;
  c.mlp.hidden = 48 * width;
  c.moe.experts = 4;
  c.moe.top_k = 2;
  c.moe.hidden = 24 * width;
  c.moe.shared_experts = 1;
  c.init_std = 0.1f;  // larger than the default so that the layers matter for the logits
  if (attention == "mla") {
    c.attention.kind = "mla";
    c.attention.q_lora_rank = 16 * width;
    c.attention.kv_lora_rank = 24 * width;
    c.attention.qk_nope_head_dim = 8 * width;
    c.attention.qk_rope_head_dim = 4 * width;
    c.attention.v_head_dim = 6 * width;
  }
  return c;
}

// n ids in [0, 256) (every tiny model's vocabulary is bytes).
inline std::vector<int32_t> random_tokens(int64_t n, uint64_t seed) {
  Rng r(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = int32_t(r.below(256));
  return t;
}

}  // namespace strata::testing
