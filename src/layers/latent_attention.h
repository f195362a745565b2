#pragma once
// Multi-head latent attention (MLA) of DeepSeek-V2/V3 (pattern char '*' with attention.kind: mla),
// as transformers' DeepseekV3Attention computes it. Keys and values come from one low-rank latent
// shared by all heads, plus one small RoPE key shared by all heads:
//   q      = x Wq^T                                   (q_lora_rank == 0)
//          = rmsnorm(x Wqa^T) Wqb^T                   (q_lora_rank > 0)
//   [c, kr] = x Wkva^T;  c = rmsnorm(c)               latent c [kv_lora_rank], kr [qk_rope_head_dim]
//   per head h: [k_nope_h, v_h] = c Wkvb_h^T;  q_h = [q_nope_h, rope(q_rope_h)];  k_h = [k_nope_h, rope(kr)]
//   y = attention(q, k, v; scale) Wo^T
// RoPE covers only the rope channels, with HF's "interleave" variant when attention.rope_interleave
// (pairs (2i, 2i+1) are first gathered into rotate_half halves). The RMSNorms use eps 1e-6 (HF's
// DeepseekV3RMSNorm default; the config's rms_norm_eps is not passed to them).
//
// Training and prefill run the expanded form above through flash attention. Decode keeps only the
// compressed cache, c and rope(kr) per token (kv_lora_rank + qk_rope_head_dim floats, against
// 2 * heads * head_dim for GQA), and absorbs Wkvb into the query and the output:
//   score_h(j) = q_nope_h . (Wuk_h c_j) + q_rope_h . kr_j = (Wuk_h^T q_nope_h) . c_j + q_rope_h . kr_j
//   o_h = sum_j p_j Wuv_h c_j = Wuv_h (sum_j p_j c_j)
// so attention runs MQA-style over the latent cache (one kv head, qk dim kv_lora_rank + rope, v dim
// kv_lora_rank = the first channels of the same rows).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "layers/block.h"

namespace strata {

// Decode state of one MLA block: for each of `batch` sequences and up to `max_T` positions the row
// [c (kv_lora_rank, normalised), rope(kr) (qk_rope_head_dim)], exactly HF's cached kv_nope / k_rot.
struct LatentCache final : BlockCache {
  int64_t batch = 0, max_T = 0, width = 0;  // width = kv_lora_rank + qk_rope_head_dim
  DeviceArray<float> rows;                  // [B, max_T, width]; positions >= pos are unused
  int64_t bytes() const override { return int64_t(sizeof(float) * rows.size()); }
  Device device() const { return rows.device(); }
};

// Parameters under `prefix` ("layers.{i}.self_attn"), Hugging Face DeepseekV3Attention names, with
// H = attention.heads, dqk = qk_nope_head_dim + qk_rope_head_dim:
//   q_proj.weight [H*dqk, D]                                   (q_lora_rank == 0), or
//   q_a_proj.weight [q_lora_rank, D], q_a_layernorm.weight [q_lora_rank], q_b_proj.weight [H*dqk, q_lora_rank];
//   kv_a_proj_with_mqa.weight [kv_lora_rank + qk_rope_head_dim, D], kv_a_layernorm.weight [kv_lora_rank],
//   kv_b_proj.weight [H*(qk_nope_head_dim + v_head_dim), kv_lora_rank], o_proj.weight [D, H*v_head_dim].
std::unique_ptr<Block> make_latent_attention(const ModelConfig& cfg, ParamStore& store, const std::string& prefix);

}  // namespace strata
