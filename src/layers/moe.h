#pragma once
// Mixture-of-experts feed-forward block (pattern char 'E'): a linear router
// picks the top-k of E SwiGLU experts per token (Mixtral), optionally plus one always-on shared
// SwiGLU expert (DeepSeek/Qwen-MoE), with the Switch load-balancing loss. Stateless like the MLP.
#include <memory>
#include <string>

#include "layers/block.h"

namespace strata {

// Parameters under `prefix` ("layers.{i}.moe"): gate.weight [E, D] (router),
// experts.{e}.{gate_proj,up_proj,down_proj}.weight [H, D], [H, D], [D, H] for e < E, and when
// cfg.moe.shared_experts = S > 0, shared_expert.{gate_proj,up_proj,down_proj}.weight with hidden S*H.
std::unique_ptr<Block> make_moe(const ModelConfig& cfg, ParamStore& store, const std::string& prefix);

}  // namespace strata
