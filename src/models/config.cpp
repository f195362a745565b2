#include "models/config.h"

namespace strata {

static int round_up(int x, int m) { return (x + m - 1) / m * m; }

void resolve(ModelConfig& m) {
  if (m.attention.kv_heads == 0) m.attention.kv_heads = m.attention.heads;
  if (m.attention.head_dim == 0 && m.attention.heads > 0) m.attention.head_dim = m.d_model / m.attention.heads;
  // SwiGLU has three matrices, so 2/3 of the classic 4x width keeps the parameter count of a GELU MLP.
  if (m.mlp.hidden == 0) m.mlp.hidden = round_up(m.d_model * 8 / 3, 64);
  if (m.moe.hidden == 0) m.moe.hidden = m.mlp.hidden;
  if (m.mamba.dt_rank == 0) m.mamba.dt_rank = (m.d_model + 15) / 16;
  if (m.vocab == "bytes") m.vocab_size = 256;
}

}  // namespace strata
