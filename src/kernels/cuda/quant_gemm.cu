// CUDA twin of kernels/cpu/quant_gemm.cpp: weight-only int8 / int4 linear forward, dequantising on
// the fly. One warp per output element (m, n): lanes stride over K, each lane decodes its own weight
// bytes, then a warp sum. Memory-bound at decode (M = 1), where it matters; no tensor cores. The sum
// order is fixed, so results are bitwise reproducible and do not depend on M.
#include "core/error.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/quant_gemm.h"

namespace strata::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;

// The dequantised weight W[n, k] (kernels/quant_weight.h).
__device__ __forceinline__ float weight_at(const uint8_t* q, const float* scales, int bits, int64_t K, int64_t n,
                                           int64_t k) {
  if (bits == 8) return scales[n] * float(static_cast<int8_t>(q[n * K + k]));
  const int64_t g = k / 32, j = k % 32;
  const uint8_t b = q[n * (K / 2) + g * 16 + (j & 15)];
  const int v = (j < 16 ? (b & 15) : (b >> 4)) - 8;
  return scales[n * (K / 32) + g] * float(v);
}

// Grid (ceil(N / 8), M), block 8 warps: warp w of block (bx, m) computes out[m, bx * 8 + w].
__global__ void quant_linear_kernel(float* out, const float* inp, const uint8_t* q, const float* scales,
                                    const float* bias, int bits, int64_t N, int64_t K) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t n = int64_t(blockIdx.x) * kWarpsPerBlock + warp, m = blockIdx.y;
  if (n >= N) return;  // whole warps leave together
  const float* x = inp + m * K;
  float acc = 0.0f;
  for (int64_t k = lane; k < K; k += 32) acc += x[k] * weight_at(q, scales, bits, K, n, k);
  acc = warp_sum(acc);
  if (lane == 0) out[m * N + n] = acc + (bias ? bias[n] : 0.0f);
}

}  // namespace

void quant_linear_forward(float* out, const float* inp, const QuantWeight& w, const float* bias, int64_t M) {
  STRATA_CHECK(w.bits == 8 || w.bits == 4, "quant_linear_forward: bits {} (expected 8 or 4)", w.bits);
  STRATA_CHECK(w.N >= 0 && w.K >= 0 && (w.bits == 8 || w.K % kQuantGroup == 0),
               "quant_linear_forward: invalid int{} weight shape [{}, {}] (int4 needs K a multiple of {})", w.bits,
               w.N, w.K, kQuantGroup);
  if (M <= 0 || w.N == 0) return;
  STRATA_CHECK(M <= 65535, "quant_linear_forward: M = {} rows exceeds the grid's y limit (65535)", M);
  const dim3 grid(unsigned((w.N + kWarpsPerBlock - 1) / kWarpsPerBlock), unsigned(M));
  STRATA_LAUNCH((grid, kWarpsPerBlock * 32, 0, current_stream()), quant_linear_kernel)(out, inp, w.q, w.scales, bias,
                                                                                        w.bits, w.N, w.K);
  CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
