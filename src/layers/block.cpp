#include "layers/block.h"

#include "core/error.h"
#include "layers/attention.h"
#include "layers/latent_attention.h"
#include "layers/mamba.h"
#include "layers/mamba2.h"
#include "layers/mlp.h"
#include "layers/moe.h"

namespace strata {

// The pattern table: one character of Megatron-LM's hybrid notation per layer.
std::unique_ptr<Block> make_block(char kind, const ModelConfig& cfg, ParamStore& store, const std::string& prefix) {
  switch (kind) {
    case 'M':
      return cfg.mamba.version == 1 ? make_mamba(cfg, store, prefix + ".mixer") : make_mamba2(cfg, store, prefix + ".mixer");
    case '*':
      return cfg.attention.kind == "mla" ? make_latent_attention(cfg, store, prefix + ".self_attn")
                                         : make_attention(cfg, store, prefix + ".self_attn");
    case '-': return make_mlp(cfg, store, prefix + ".mlp");
    case 'E': return make_moe(cfg, store, prefix + ".moe");
  }
  STRATA_CHECK(false, "unknown layer kind '{}' (valid: M * - E)", kind);
}

}  // namespace strata
