#pragma once
// Mamba-2 mixer block (pattern char 'M' with mamba.version = 2), as mamba_ssm's Mamba2 module /
// Hugging Face Mamba2Mixer (ngroups B/C groups, gated RMSNorm, norm_before_gate = False):
//   [z, xBC, dt] = in_proj(h);  xBC = silu(causal_conv1d(xBC));  [x, B, C] = xBC
//   y = ssd(x, dt + dt_bias (softplus), A = -exp(A_log), B, C, D);  y = rmsnorm(y * silu(z)) per group
//   out = out_proj(y)
// d_inner = expand * d_model, H = d_inner / head_dim heads of P = head_dim channels, G = ngroups,
// N = d_state, K = d_conv, conv_dim = d_inner + 2 G N.
#include <memory>
#include <string>
#include <vector>

#include "layers/block.h"

namespace strata {

// Decode state of one Mamba-2 block for `batch` sequences. Public so that tests and tools can
// inspect it; the engine treats it as an opaque BlockCache.
struct Mamba2Cache final : BlockCache {
  int64_t batch = 0;
  DeviceArray<float> conv;  // [B, conv_dim, K-1]: the last K-1 conv inputs (x|B|C), oldest first
  DeviceArray<float> ssm;   // [B, H, P, N]
  int64_t bytes() const override { return int64_t(sizeof(float) * (conv.size() + ssm.size())); }
  Device device() const { return ssm.device(); }
};

// Parameters under `prefix` ("layers.{i}.mixer"), Hugging Face Mamba2Mixer names:
//   in_proj.weight [2*d_inner + 2*G*N + H, D] (z rows, then xBC rows, then dt rows),
//   in_proj.bias (if mamba.bias), conv1d.weight [conv_dim, 1, K], conv1d.bias [conv_dim] (if
//   mamba.conv_bias), dt_bias [H], A_log [H], D [H], norm.weight [d_inner], out_proj.weight [D, d_inner],
//   out_proj.bias [D] (if mamba.bias).
std::unique_ptr<Block> make_mamba2(const ModelConfig& cfg, ParamStore& store, const std::string& prefix);

}  // namespace strata
