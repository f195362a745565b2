#pragma once
// The model's shape as the blocks read it: ModelConfig and each block kind's config, part of the
// resolved experiment config (models/config.h). It lives with the blocks so that they need nothing
// from the layers above them. 0 in a size field means "derive the default" (see resolve()).
#include <string>

namespace strata {

struct AttentionConfig {
  int heads = 4;
  int kv_heads = 0;   // 0 -> heads (MHA); fewer -> GQA; 1 -> MQA
  int head_dim = 0;   // 0 -> d_model / heads
  float rope_theta = 10000.0f;
  // RoPE of kind gqa as transformers' rope_parameters (layers/rope_freq.h builds the frequencies).
  bool rope = true;      // gqa: false = no positional encoding at all (Jamba's attention)
  int rope_dims = 0;     // gqa: channels rotated per head, even; the rest pass through (partial rotary); 0 -> head_dim
  std::string rope_type = "default";  // default | linear | llama3
  float rope_factor = 1.0f;           // linear, llama3: "factor"
  float rope_low_freq_factor = 1.0f;  // llama3: "low_freq_factor"
  float rope_high_freq_factor = 4.0f;  // llama3: "high_freq_factor"
  int rope_original_max_positions = 8192;  // llama3: "original_max_position_embeddings"
  std::string kind = "gqa";  // gqa (covers mha/mqa) | mla (DeepSeek-V2/V3 multi-head latent attention)
  // sliding-window attention (gqa and mla), each query sees the last `window` positions (itself included);
  // 0 = full causal. The cheap-attention baseline of the synthetic comparisons; strata-only (no HF export).
  int window = 0;
  // kind == mla only (heads and rope_theta as above; kv_heads unused; 0 -> derived from head_dim hd):
  int q_lora_rank = 0;         // 0: plain q_proj; > 0: q_a_proj -> RMSNorm -> q_b_proj (not derived)
  int kv_lora_rank = 0;        // width of the cached latent c_kv; 0 -> 4 * hd
  int qk_nope_head_dim = 0;    // query/key channels without RoPE; 0 -> hd
  int qk_rope_head_dim = 0;    // query/key channels with RoPE (even; the key part shared by all heads); 0 -> hd / 2
  int v_head_dim = 0;          // 0 -> hd
  bool rope_interleave = true;  // RoPE pairs (2i, 2i+1) as DeepSeek-V3 stores them; false: rotate_half halves
  float softmax_scale = 0.0f;  // 0 -> 1 / sqrt(qk_nope_head_dim + qk_rope_head_dim)
};

struct MambaConfig {
  int version = 2;    // 1: Mamba (selective scan), 2: Mamba-2 (SSD)
  int d_state = 16;
  int d_conv = 4;
  int expand = 2;
  int head_dim = 32;  // Mamba-2 only
  int ngroups = 1;    // Mamba-2 only
  int chunk = 64;     // Mamba-2 only
  int dt_rank = 0;    // Mamba-1 only; 0 -> ceil(d_model / 16)
  float dt_min = 0.001f, dt_max = 0.1f, dt_init_floor = 1e-4f;
  bool conv_bias = true;
  bool bias = false;  // in_proj / out_proj bias
  bool inner_norms = false;  // Mamba-1 only: RMSNorm (eps = norm_eps) on dt, B and C after x_proj (Jamba)
  // Mamba-1 only. false: the non-selective (S4D-like) baseline of the Mamba paper's ablations: dt, B
  // and C do not depend on the input (dt = softplus(dt_bias) per channel, B and C learned [d_state]
  // vectors); x_proj and dt_proj are gone. A strata-only model (no Hugging Face export).
  bool selective = true;
};

struct MlpConfig {
  int hidden = 0;  // 0 -> 4 * d_model * 2/3 rounded up to a multiple of 64 (SwiGLU)
};

struct MoeConfig {
  int experts = 8;
  int top_k = 2;
  int shared_experts = 0;
  int hidden = 0;          // per expert; 0 -> like mlp.hidden
  float aux_loss = 0.01f;  // coefficient of the load-balancing loss
  bool renorm = true;      // renormalise the top-k gates to sum to 1 (Mixtral)
};

struct ModelConfig {
  std::string vocab = "bytes";
  int vocab_size = 256;
  int d_model = 128;
  std::string pattern = "M*";
  int repeat = 1;
  bool tie_embeddings = true;
  float norm_eps = 1e-5f;
  float init_std = 0.02f;
  AttentionConfig attention;
  MambaConfig mamba;
  MlpConfig mlp;
  MoeConfig moe;
};

// Fills derived defaults (kv_heads, head_dim, hidden sizes, dt_rank). Idempotent.
void resolve(ModelConfig& m);

}  // namespace strata
