#pragma once
// Weight-only quantised linear layers (int8 per output row, int4 in groups of 32 along K; the format
// is kernels/quant_weight.h): fp32 activations, weights dequantised on the fly, fp32 accumulation.
// The decode case (a few rows of x against the whole weight) is a GEMV that reads each weight byte
// once per four rows of x, with run-time ISA dispatch (AVX-512 / AVX2 on x86-64, chosen once by
// CPUID, forcible for tests) and a portable fallback. Larger M (prefill) dequantises tiles of W to
// fp32 and runs them through the fp32 gemm. The CUDA twin is kernels/cuda/quant_gemm.h.
//
// No AVX-512 VNNI / AMX path: they multiply int8 by int8, so they would need the activations
// quantised too (llama.cpp's Q8 activations); this kernel keeps fp32 activations, and at batch 1 it
// is bound by reading the weights, which the fp32 FMA path already does at memory speed.
#include <cstdint>

#include "kernels/quant_weight.h"

namespace strata::cpu {

// Throws InputError when (bits, N, K) cannot be quantised: bits not 8 or 4, a negative size, or
// bits 4 with K not a multiple of kQuantGroup (32).
void check_quant_shape(int bits, int64_t N, int64_t K);
// w[N, K] -> q (quant_bytes(bits, N, K) bytes) and scales (quant_scales(bits, N, K) floats), as
// kernels/quant_weight.h describes. Non-finite weights: InputError.
void quantize_weight(int bits, const float* w, int64_t N, int64_t K, uint8_t* q, float* scales);
// out[N, K] = dequantised w (s * q).
void dequantize_weight(const QuantWeight& w, float* out);

// inp[M, K], w: W[N, K] quantised, bias[N] or null -> out[M, N] = inp @ dq(W)^T + bias.
// Rows of out computed by the GEMV path (M < 8) do not depend on M or on the other rows (each is
// the same sequence of operations whatever the batch): batch-invariant within that path.
// row_invariant: the GEMV path for every M (the serving engine's batch invariance, Ctx::row_tile),
// each weight byte read and dequantised once per four rows instead of once per product.
void quant_linear_forward(float* out, const float* inp, const QuantWeight& w, const float* bias, int64_t M,
                          bool row_invariant = false);

// The GEMV paths. quant_isa() is the one in use: the best this CPU has unless set_quant_isa forced
// another (tests and benchmarks; throws Error for one the CPU lacks).
enum class QuantIsa { portable, avx2, avx512 };
QuantIsa quant_isa();
bool quant_isa_supported(QuantIsa isa);
void set_quant_isa(QuantIsa isa);
const char* quant_isa_name(QuantIsa isa);  // "portable", "avx2", "avx512"

}  // namespace strata::cpu
