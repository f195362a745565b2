#pragma once
// SwiGLU feed-forward (Llama): y = down(silu(gate(x)) * up(x)). The layer for pattern char '-',
// and the free functions below are also every MoE expert's body (layers/moe.cpp), so the two
// share one implementation.
#include <cstdint>
#include <memory>
#include <string>

#include "layers/block.h"

namespace strata {

// Parameters "<prefix>.{gate_proj,up_proj,down_proj}.weight": [H, D], [H, D], [D, H].
std::unique_ptr<Block> make_mlp(const ModelConfig& cfg, ParamStore& store, const std::string& prefix);

// x[N, D] -> y[N, D] (assigned) with wg, wu[H, D], wd[D, H]; the products at ctx.precision
// (layers/linear.h). hg, hu[N, H] receive the gate and up pre-activations (what backward needs
// besides x); act[N, H] is scratch (it may be hg or hu when they are not kept for backward).
void swiglu_mlp_forward(const Ctx& ctx, float* y, float* hg, float* hu, float* act, const float* x, const float* wg,
                        const float* wu, const float* wd, int64_t N, int64_t D, int64_t H);

// dy[N, D] -> dx[N, D] (assigned, or accumulated when accumulate_dx); dwg, dwu[H, D], dwd[D, H]
// accumulated. x, hg, hu as saved by the forward; scratch: 3 * N * H floats.
void swiglu_mlp_backward(const Ctx& ctx, float* dx, float* dwg, float* dwu, float* dwd, const float* dy, const float* x,
                         const float* hg, const float* hu, const float* wg, const float* wu, const float* wd,
                         int64_t N, int64_t D, int64_t H, float* scratch, bool accumulate_dx);

// Forward multiply-adds x2 of one SwiGLU MLP per token.
inline double swiglu_mlp_flops(int64_t D, int64_t H) { return 2.0 * 3.0 * double(D) * double(H); }

}  // namespace strata
