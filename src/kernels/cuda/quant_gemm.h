#pragma once
// CUDA twin of kernels/cpu/quant_gemm.h (the forward product only; quantising is host work, done by
// the CPU functions, and the bytes then copied to the device). Every pointer is a device pointer
// (w.q and w.scales included) and the work is queued on the current stream.
#include <cstdint>

#include "kernels/quant_weight.h"

namespace strata::cuda {

// inp[M, K], w: W[N, K] quantised (kernels/quant_weight.h), bias[N] or null
// -> out[M, N] = inp @ dq(W)^T + bias. One warp per output element, fp32 accumulation in a fixed order.
void quant_linear_forward(float* out, const float* inp, const QuantWeight& w, const float* bias, int64_t M);

// The same with int8 activations: bit for bit kernels/cpu/quant_gemm.h's quant_linear_forward_act8
// (the same activation codes, exact int32 block dots, the same fmas and sum tree). Half a warp per
// output element; scratch for the quantised rows on the current stream.
void quant_linear_forward_act8(float* out, const float* inp, const QuantWeight& w, const float* bias, int64_t M);

}  // namespace strata::cuda
