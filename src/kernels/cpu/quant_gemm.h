#pragma once
// Weight-only quantised linear layers (int8 per output row, int4 in groups of 32 along K; the format
// is kernels/quant_weight.h): fp32 activations, weights dequantised on the fly, fp32 accumulation.
// The decode case (a few rows of x against the whole weight) is a GEMV that reads each weight byte
// once per four rows of x, with run-time ISA dispatch (AVX-512 / AVX2 on x86-64, chosen once by
// CPUID, forcible for tests) and a portable fallback. Larger M (prefill) dequantises tiles of W to
// fp32 and runs them through the fp32 gemm. The CUDA twin is kernels/cuda/quant_gemm.h.
//
// The int8-by-int8 instructions (AVX-512 VNNI) need the activations quantised too: that is the
// second numeric mode below (quant_linear_forward_act8), chosen per model at load, never silently.
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

// ---- int8 activations (W8A8 / W4A8: llama.cpp's Q8_0 activations) ------------------------------
// Each row of inp is quantised in blocks of kActBlock (32) along K: s = amax / 127 over the block,
// xq = round(x / s) in [-127, 127] (quantize_activations). Each block's dot product with the weight's
// int8 / int4 codes is then exact in int32, and the result is
//   out[m, n] = tree16(acc) (* s_w[n] for int8) + bias[n],  acc[8 (b % 2) + l] += float(d[b, l]) * s_b
// where d[b, l] is the integer dot of bytes 4l..4l+3 of block b, s_b = s_x[m, b] (* s_w[n, b] for
// int4), each += one fma, blocks in order, and tree16 a fixed pairwise sum (quant_gemm_act8.cpp).
// Every ISA path computes exactly that, so they give the same bits (the answer does not depend on
// the CPU), and a row does not depend on M or on the other rows (batch-invariant at every M).
// Paths: AVX-512 VNNI (vpdpbusd on 64 bytes: 2 blocks per instruction), AVX2 (vpmaddubsw +
// vpmaddwd on one block), portable. No AMX path: no CPU here has it to test on (docs/serving.md).
inline constexpr int64_t kActBlock = 32;

// One row: x[K] -> q[ceil(K / 32) * 32] (zero past K) and scales[ceil(K / 32)].
void quantize_activations(const float* x, int64_t K, int8_t* q, float* scales);

// inp[M, K] (fp32; quantised inside), w, bias[N] or null -> out[M, N] as above.
void quant_linear_forward_act8(float* out, const float* inp, const QuantWeight& w, const float* bias, int64_t M);

enum class Act8Isa { portable, avx2, avx512_vnni };
Act8Isa act8_isa();
bool act8_isa_supported(Act8Isa isa);
void set_act8_isa(Act8Isa isa);  // tests and benchmarks; Error for one this CPU lacks
const char* act8_isa_name(Act8Isa isa);  // "portable", "avx2", "avx512_vnni"

}  // namespace strata::cpu
