#pragma once
// Causal self-attention block (pattern char '*'), Llama style: no biases, RoPE on q and k over the
// first attention.rope_dims channels of each head (Hugging Face rotate_half convention; frequencies
// of attention.rope_type, layers/rope_freq.h), or no positional encoding at all when
// attention.rope = false (Jamba), MHA / GQA / MQA by attention.kv_heads.
//   q = x Wq^T, k = x Wk^T, v = x Wv^T;  q, k = rope(q, k);  y = attention(q, k, v) Wo^T
// The cache holds the post-RoPE keys and values of every position seen so far.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "layers/block.h"

namespace strata {

// Decode state of one attention block for `batch` sequences of up to `max_T` tokens. Public so
// that tests and tools can inspect it; the engine treats it as an opaque BlockCache.
struct AttentionCache final : BlockCache {
  int64_t batch = 0, max_T = 0;
  DeviceArray<float> k, v;  // [B, max_T, Hkv, hd] each, post-RoPE; positions >= pos are unused
  int64_t bytes() const override { return int64_t(sizeof(float) * (k.size() + v.size())); }
  Device device() const { return k.device(); }
};

// Parameters under `prefix` ("layers.{i}.self_attn"), Hugging Face LlamaAttention names, with
// hd = attention.head_dim, Hq = attention.heads, Hkv = attention.kv_heads:
//   q_proj.weight [Hq*hd, D], k_proj.weight [Hkv*hd, D], v_proj.weight [Hkv*hd, D], o_proj.weight [D, Hq*hd].
std::unique_ptr<Block> make_attention(const ModelConfig& cfg, ParamStore& store, const std::string& prefix);

// Keys a query sees on average over a causal sequence of T tokens: (T + 1) / 2, or with a sliding
// window W < T, (T W - W (W - 1) / 2) / T (the first W - 1 queries see fewer than W). For the
// attention blocks' flops_per_token.
inline double mean_keys_per_query(int64_t T, int64_t window) {
  if (window <= 0 || window >= T) return (double(T) + 1.0) / 2.0;
  const double W = double(window);
  return (double(T) * W - W * (W - 1.0) / 2.0) / double(T);
}

}  // namespace strata
