// The derived defaults of the model config (block_config.h).
#include "layers/block_config.h"

namespace strata {

static int round_up(int x, int m) { return (x + m - 1) / m * m; }

void resolve(ModelConfig& m) {
  if (m.attention.kv_heads == 0) m.attention.kv_heads = m.attention.heads;
  if (m.attention.head_dim == 0 && m.attention.heads > 0) m.attention.head_dim = m.d_model / m.attention.heads;
  if (m.attention.rope_dims == 0) m.attention.rope_dims = m.attention.head_dim;
  if (m.attention.kind == "mla") {
    // DeepSeek-V2's proportions (head 128: nope 128, rope 64, v 128, latent 512).
    AttentionConfig& a = m.attention;
    if (a.qk_nope_head_dim == 0) a.qk_nope_head_dim = a.head_dim;
    if (a.qk_rope_head_dim == 0) a.qk_rope_head_dim = a.head_dim / 4 * 2;
    if (a.v_head_dim == 0) a.v_head_dim = a.head_dim;
    if (a.kv_lora_rank == 0) a.kv_lora_rank = 4 * a.head_dim;
  }
  // SwiGLU has three matrices, so 2/3 of the classic 4x width keeps the parameter count of a GELU MLP.
  if (m.mlp.hidden == 0) m.mlp.hidden = round_up(m.d_model * 8 / 3, 64);
  if (m.moe.hidden == 0) m.moe.hidden = m.mlp.hidden;
  if (m.mamba.dt_rank == 0) m.mamba.dt_rank = (m.d_model + 15) / 16;
  if (m.vocab == "bytes") m.vocab_size = 256;
}

}  // namespace strata
