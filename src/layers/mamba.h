#pragma once
// Mamba (v1) mixer block (pattern char 'M' with mamba.version = 1), as mamba_ssm's Mamba module:
//   [x, z] = in_proj(h);  x = silu(causal_conv1d(x));  [dt, B, C] = x_proj(x);  dt = dt_proj.weight dt
//   (with mamba.inner_norms, Jamba's JambaMambaMixer: dt, B, C = RMSNorm(dt), RMSNorm(B), RMSNorm(C)
//   before dt_proj and the scan, eps = norm_eps)
//   y = selective_scan(x, dt + dt_proj.bias, A = -exp(A_log), B, C, D, gate z);  out = out_proj(y)
// The cache holds conv_state [B, d_inner, d_conv-1] and ssm_state [B, d_inner, d_state].
#include <memory>
#include <string>
#include <vector>

#include "layers/block.h"

namespace strata {

// Decode state of one Mamba block for `batch` sequences. Public so that tests and tools can inspect
// it; the engine treats it as an opaque BlockCache.
struct MambaCache final : BlockCache {
  int64_t batch = 0;
  DeviceArray<float> conv;  // [B, d_inner, d_conv-1]: the last d_conv-1 conv inputs, oldest first
  DeviceArray<float> ssm;   // [B, d_inner, d_state]
  int64_t bytes() const override { return int64_t(sizeof(float) * (conv.size() + ssm.size())); }
  Device device() const { return ssm.device(); }
};

// Parameters under `prefix` ("layers.{i}.mixer"), Hugging Face MambaMixer names, d_inner = expand * D,
// R = dt_rank, S = d_state, K = d_conv:
//   in_proj.weight [2*d_inner, D] (x rows, then z rows), in_proj.bias [2*d_inner] (if mamba.bias),
//   conv1d.weight [d_inner, 1, K], conv1d.bias [d_inner] (if mamba.conv_bias),
//   x_proj.weight [R + 2S, d_inner] (dt, B, C rows), dt_proj.weight [d_inner, R], dt_proj.bias [d_inner],
//   A_log [d_inner, S], D [d_inner], out_proj.weight [D, d_inner], out_proj.bias [D] (if mamba.bias),
//   and with mamba.inner_norms dt_layernorm.weight [R], b_layernorm.weight [S], c_layernorm.weight [S].
std::unique_ptr<Block> make_mamba(const ModelConfig& cfg, ParamStore& store, const std::string& prefix);

}  // namespace strata
