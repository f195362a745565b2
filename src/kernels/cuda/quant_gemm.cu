// CUDA twin of kernels/cpu/quant_gemm.cpp: weight-only int8 / int4 linear forward, dequantising on
// the fly. One warp per output element (m, n): lanes stride over K, each lane decodes its own weight
// bytes, then a warp sum. Memory-bound at decode (M = 1), where it matters; no tensor cores. The sum
// order is fixed, so results are bitwise reproducible and do not depend on M.
#include "core/error.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/quant_gemm.h"
#include "kernels/cuda/scratch.cuh"

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

// ---- int8 activations: the twin of kernels/cpu/quant_gemm_act8.cpp, bit for bit ----------------

constexpr int kBlock = 32;  // kernels/cpu/quant_gemm.h kActBlock

// Grid (blocks, M), one warp per block of 32 inputs: q[m, 32 b + lane] and s[m, b], as the CPU's
// quantize_activations (IEEE division and round-to-nearest-even, as std::nearbyint).
__global__ void quantize_activations_kernel(int8_t* q, float* s, const float* inp, int64_t K, int64_t blocks) {
  const int lane = threadIdx.x;
  const int64_t b = blockIdx.x, m = blockIdx.y, k = b * kBlock + lane;
  const float v = k < K ? inp[m * K + k] : 0.0f;
  const float amax = warp_max(fabsf(v));
  const float sc = amax / 127.0f;
  const float inv = sc > 0.0f ? 1.0f / sc : 0.0f;
  q[m * blocks * kBlock + k] = k < K ? int8_t(fminf(fmaxf(rintf(v * inv), -127.0f), 127.0f)) : int8_t(0);
  if (lane == 0) s[m * blocks + b] = sc;
}

__device__ __forceinline__ int weight_code(const uint8_t* q, int bits, int64_t K, int64_t n, int64_t k) {
  if (bits == 8) return static_cast<int8_t>(q[n * K + k]);
  const int64_t j = k % kBlock;
  const uint8_t byte = q[n * (K / 2) + (k / kBlock) * 16 + (j & 15)];
  return int(j < 16 ? (byte & 15) : (byte >> 4)) - 8;
}

// Grid (ceil(N / 16), M), 256 threads: each half-warp computes one out[m, n]. Thread t of the half
// is the CPU's lane t: lane l = t % 8 of blocks b = t / 8, t / 8 + 2, ... (one fma per block, in
// order); then the CPU's tree: lanes i + 8, i + 4, i + 2, i + 1 added in that order.
__global__ void quant_linear_act8_kernel(float* out, const int8_t* xq, const float* xs, const uint8_t* q,
                                         const float* scales, const float* bias, int bits, int64_t N, int64_t K,
                                         int64_t blocks) {
  const int t = threadIdx.x & 15, l = t & 7, h = t >> 3;
  const int64_t n = int64_t(blockIdx.x) * 16 + (threadIdx.x >> 4), m = blockIdx.y;
  float acc = 0.0f;
  if (n < N) {  // no early return: the whole half-warp takes part in the shuffles
    const int8_t* x = xq + m * blocks * kBlock;
    for (int64_t b = h; b < blocks; b += 2) {
      int d = 0;
      for (int j = 0; j < 4; ++j) {
        const int64_t k = b * kBlock + 4 * l + j;
        if (k < K) d += int(x[k]) * weight_code(q, bits, K, n, k);
      }
      const float sx = xs[m * blocks + b];
      const float sc = bits == 4 ? sx * scales[n * (K / kBlock) + b] : sx;
      acc = fmaf(float(d), sc, acc);
    }
  }
  for (int o = 8; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, o, 16);
  if (t == 0 && n < N) {
    const float bn = bias ? bias[n] : 0.0f;
    out[m * N + n] = bits == 8 ? fmaf(acc, scales[n], bn) : acc + bn;
  }
}

}  // namespace

void quant_linear_forward_act8(float* out, const float* inp, const QuantWeight& w, const float* bias, int64_t M) {
  check_quant_weight(w, "quant_linear_forward_act8");
  if (M <= 0 || w.N == 0) return;
  STRATA_CHECK(M <= 65535, "quant_linear_forward_act8: M = {} rows exceeds the grid's y limit (65535)", M);
  const int64_t blocks = (w.K + kBlock - 1) / kBlock;
  Scratch<int8_t> xq(M * blocks * kBlock);
  Scratch<float> xs(M * blocks);
  if (blocks > 0) {
    STRATA_LAUNCH((dim3(unsigned(blocks), unsigned(M)), kBlock, 0, current_stream()), quantize_activations_kernel)(
        xq.get(), xs.get(), inp, w.K, blocks);
    CUDA_CHECK_LAUNCH();
  }
  const dim3 grid(unsigned((w.N + 15) / 16), unsigned(M));
  STRATA_LAUNCH((grid, 256, 0, current_stream()), quant_linear_act8_kernel)(out, xq.get(), xs.get(), w.q, w.scales,
                                                                            bias, w.bits, w.N, w.K, blocks);
  CUDA_CHECK_LAUNCH();
}

void quant_linear_forward(float* out, const float* inp, const QuantWeight& w, const float* bias, int64_t M) {
  check_quant_weight(w, "quant_linear_forward");
  if (M <= 0 || w.N == 0) return;
  STRATA_CHECK(M <= 65535, "quant_linear_forward: M = {} rows exceeds the grid's y limit (65535)", M);
  const dim3 grid(unsigned((w.N + kWarpsPerBlock - 1) / kWarpsPerBlock), unsigned(M));
  STRATA_LAUNCH((grid, kWarpsPerBlock * 32, 0, current_stream()), quant_linear_kernel)(out, inp, w.q, w.scales, bias,
                                                                                        w.bits, w.N, w.K);
  CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
