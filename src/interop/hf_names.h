#pragma once
// Where each strata parameter lives in a Hugging Face checkpoint, per architecture: name tables
// (data, as llama.cpp keeps them), both directions.
//
// strata names: embed_tokens.weight, layers.{k}.norm.weight, layers.{k}.{self_attn|mixer|mlp|moe}.<rest>,
// norm_f.weight, lm_head.weight. A Hugging Face decoder layer j of a transformer-like architecture
// (Llama, Mixtral, Jamba, DeepSeek-V3) is two strata sublayers, 2j (the mixer: attention or Mamba)
// and 2j+1 (the feed-forward: MLP or MoE); a Mamba / Mamba-2 layer is one sublayer. The strata
// blocks already use the Hugging Face names inside a block (q_proj, in_proj, A_log, ...), so most
// rows only move the block under its module; the rest rename (Mixtral's w1/w2/w3, Jamba's router) or
// slice a fused expert tensor (transformers 5's [E, 2H, D] gate_up_proj and [E, D, H] down_proj).
#include <cstdint>
#include <string>
#include <vector>

#include "interop/hf_arch.h"

namespace strata {

struct HfSource {
  enum Kind {
    whole,       // the tensor itself (shapes equal up to size-1 dimensions)
    fused_gate,  // rows [0, H) of expert e of a [E, 2H, D] gate_up_proj
    fused_up,    // rows [H, 2H) of expert e of a [E, 2H, D] gate_up_proj
    fused_down,  // expert e of a [E, D, H] down_proj
  };
  std::string name;
  Kind kind = whole;
  int64_t expert = -1;
};

// How many strata sublayers one Hugging Face decoder layer is (2 for transformer-like, 1 for Mamba).
int hf_sublayers_per_layer(HfArch arch);

// The Hugging Face tensors that may hold strata parameter `strata_name`, in order of preference:
// first the name transformers 5.24's save_pretrained writes (what export writes), then the other
// layouts Hub checkpoints use (transformers 5's fused experts, mamba_ssm's "backbone.embedding").
// Throws strata::Error for a name the table does not cover (a strata block the architecture lacks).
std::vector<HfSource> hf_sources(HfArch arch, const std::string& strata_name);

// Tensors found in real checkpoints that hold nothing a strata model needs and that transformers
// itself skips on load (RoPE inv_freq buffers). The importer drops them, saying so.
bool hf_tensor_is_buffer(const std::string& hf_name);

}  // namespace strata
