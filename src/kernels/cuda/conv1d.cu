// CUDA twin of kernels/cpu/conv1d.cpp: causal depthwise conv1d, channels last. Consecutive threads
// take consecutive channels of a token row, so every load and store coalesces; the taps of one
// channel are K reads of rows t-K+1 .. t, which neighbouring tokens share through L1/L2.
// The backward's dw / dbias reduction is deterministic: fixed row chunks write partials that a second
// kernel adds in chunk order (no float atomics), as the CPU twin does.
#include "kernels/cuda/conv1d.h"

#include "core/error.h"
#include "kernels/cuda/runtime.h"
#include "kernels/cuda/scratch.cuh"
#include "kernels/cuda/ssm_math.cuh"

namespace strata::cuda {
namespace {

using ssm_math::sigmoid;
using ssm_math::silu_grad;

constexpr int kThreads = 256;
constexpr int kChanTile = 32;   // channels per block of the dw reduction (one warp's width)
constexpr int kRowLanes = 8;    // rows walked in parallel per channel in that block
constexpr int64_t kRows = 256;  // rows (tokens) per dw partial: the unit of the fixed-order sum

inline unsigned blocks_for(int64_t n, int threads = kThreads) { return unsigned((n + threads - 1) / threads); }

// Pre-activation at (row r = b*T + t, channel c): bias + sum_j w[c, j] x[t-(K-1)+j] (taps oldest first,
// as the CPU twin sums them).
__device__ __forceinline__ float conv_pre(const float* x, const float* w, const float* bias, int64_t r, int64_t t,
                                          int64_t c, int64_t C, int64_t K) {
  float acc = bias ? bias[c] : 0.0f;
  for (int64_t j = t < K - 1 ? K - 1 - t : 0; j < K; ++j) acc = fmaf(w[c * K + j], x[(r - (K - 1) + j) * C + c], acc);
  return acc;
}

// y[B, T, C]: one thread per output element.
__global__ void conv_fwd_kernel(float* y, const float* x, const float* w, const float* bias, int64_t T, int64_t C,
                                int64_t K, bool silu, int64_t total) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int64_t c = i % C, r = i / C, t = r % T;
  const float v = conv_pre(x, w, bias, r, t, c, C, K);
  y[i] = silu ? v * sigmoid(v) : v;
}

// g = dy * silu'(pre), or dy without the activation.
__device__ __forceinline__ float conv_grad(const float* dy, const float* x, const float* w, const float* bias,
                                           int64_t r, int64_t t, int64_t c, int64_t C, int64_t K, bool silu) {
  const float d = dy[r * C + c];
  return silu ? d * silu_grad(conv_pre(x, w, bias, r, t, c, C, K)) : d;
}

// dx[b, s, c] = sum_j w[c, j] g[b, s+(K-1)-j, c] over the taps whose output lies inside the sequence;
// g of those K outputs is recomputed (K^2 reads of x, all cached) rather than staged in a buffer.
__global__ void conv_bwd_dx_kernel(float* dx, const float* dy, const float* x, const float* w, const float* bias,
                                   int64_t T, int64_t C, int64_t K, bool silu, int64_t total) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int64_t c = i % C, r = i / C, s = r % T;
  float acc = 0.0f;
  for (int64_t j = s + K > T ? s + K - T : 0; j < K; ++j) {
    const int64_t t = s + (K - 1) - j;
    acc = fmaf(w[c * K + j], conv_grad(dy, x, w, bias, r + (K - 1) - j, t, c, C, K, silu), acc);
  }
  dx[i] = acc;
}

// Partials of dw (taps 0..K-1) and dbias (slot K) over rows [chunk * kRows, +kRows) of the flattened
// [B*T] token axis: part[chunk][K+1][C]. Block = kChanTile channels x kRowLanes row lanes; each lane
// keeps its K+1 sums in its own shared slots (any K works), then lane 0 adds the lanes in order.
__global__ void conv_bwd_dw_partial_kernel(float* part, const float* dy, const float* x, const float* w,
                                           const float* bias, int64_t BT, int64_t T, int64_t C, int64_t K, bool silu) {
  STRATA_DYNAMIC_SMEM(float, sacc);  // [kRowLanes][K+1][kChanTile]
  const int tx = int(threadIdx.x), ty = int(threadIdx.y);
  const int64_t c = int64_t(blockIdx.x) * kChanTile + tx;
  const int64_t chunk = blockIdx.y, r0 = chunk * kRows, r1 = r0 + kRows < BT ? r0 + kRows : BT;
  float* mine = sacc + ty * (K + 1) * kChanTile + tx;
  for (int64_t j = 0; j <= K; ++j) mine[j * kChanTile] = 0.0f;
  if (c < C) {
    for (int64_t r = r0 + ty; r < r1; r += kRowLanes) {
      const int64_t t = r % T;
      const float g = conv_grad(dy, x, w, bias, r, t, c, C, K, silu);
      mine[K * kChanTile] += g;
      for (int64_t j = t < K - 1 ? K - 1 - t : 0; j < K; ++j)
        mine[j * kChanTile] = fmaf(g, x[(r - (K - 1) + j) * C + c], mine[j * kChanTile]);
    }
  }
  __syncthreads();
  if (c >= C) return;
  for (int64_t j = ty; j <= K; j += kRowLanes) {
    float s = 0.0f;
    for (int l = 0; l < kRowLanes; ++l) s += sacc[(l * (K + 1) + j) * kChanTile + tx];
    part[(chunk * (K + 1) + j) * C + c] = s;
  }
}

// dw[c, j] += sum over chunks (in order) of part[chunk][j][c]; dbias[c] likewise from slot K.
__global__ void conv_bwd_dw_reduce_kernel(float* dw, float* dbias, const float* part, int64_t nchunks, int64_t C,
                                          int64_t K) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;  // over (K+1) * C, channel fastest
  if (i >= (K + 1) * C) return;
  const int64_t j = i / C, c = i % C;
  float s = 0.0f;
  for (int64_t ch = 0; ch < nchunks; ++ch) s += part[ch * (K + 1) * C + i];
  if (j < K)
    dw[c * K + j] += s;
  else if (dbias)
    dbias[c] += s;
}

// One token per (b, c): state[b, c, 0..K-2] holds the previous inputs, oldest first.
__global__ void conv_step_kernel(float* y, float* state, const float* x, const float* w, const float* bias, int64_t C,
                                 int64_t K, bool silu, int64_t total) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;  // b * C + c
  if (i >= total) return;
  const int64_t c = i % C, S = K - 1;
  float* st = state + i * S;
  const float* wc = w + c * K;
  const float xv = x[i];
  float acc = bias ? bias[c] : 0.0f;
  for (int64_t j = 0; j < S; ++j) acc = fmaf(wc[j], st[j], acc);
  acc = fmaf(wc[S], xv, acc);
  for (int64_t j = 0; j + 1 < S; ++j) st[j] = st[j + 1];
  if (S > 0) st[S - 1] = xv;
  y[i] = silu ? acc * sigmoid(acc) : acc;
}

// state[b, c, j] = x[b, T-(K-1)+j, c] (zero before the sequence start).
__global__ void conv_state_kernel(float* state, const float* x, int64_t T, int64_t C, int64_t K, int64_t total) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;  // (b * C + c) * (K-1) + j
  if (i >= total) return;
  const int64_t S = K - 1, j = i % S, bc = i / S, c = bc % C, b = bc / C;
  const int64_t t = T - S + j;
  state[i] = t >= 0 ? x[(b * T + t) * C + c] : 0.0f;
}

}  // namespace

void conv1d_causal_forward(float* y, const float* x, const float* w, const float* bias, int64_t B, int64_t T,
                           int64_t C, int64_t K, bool silu) {
  const int64_t total = B * T * C;
  if (total == 0) return;
  STRATA_LAUNCH((blocks_for(total), kThreads, 0, current_stream()), conv_fwd_kernel)(y, x, w, bias, T, C, K, silu, total);
  CUDA_CHECK_LAUNCH();
}

void conv1d_causal_backward(float* dx, float* dw, float* dbias, const float* dy, const float* x, const float* w,
                            const float* bias, int64_t B, int64_t T, int64_t C, int64_t K, bool silu) {
  const int64_t BT = B * T, total = BT * C;
  if (total == 0) return;  // nothing to assign, nothing to accumulate
  STRATA_LAUNCH((blocks_for(total), kThreads, 0, current_stream()), conv_bwd_dx_kernel)(dx, dy, x, w, bias, T, C, K, silu, total);
  CUDA_CHECK_LAUNCH();

  const int64_t nchunks = (BT + kRows - 1) / kRows;
  STRATA_CHECK(nchunks <= 65535, "conv1d_causal_backward: {} tokens exceed the dw kernel's grid", BT);
  Scratch<float> part(nchunks * (K + 1) * C);
  const size_t smem = size_t(kRowLanes) * size_t(K + 1) * kChanTile * sizeof(float);
  STRATA_CHECK(smem <= 48 * 1024, "conv1d_causal_backward: kernel size {} too large for the CUDA kernel", K);
  const dim3 grid(unsigned((C + kChanTile - 1) / kChanTile), unsigned(nchunks));
  STRATA_LAUNCH((grid, dim3(kChanTile, kRowLanes), smem, current_stream()), conv_bwd_dw_partial_kernel)(part.get(), dy, x, w, bias, BT, T,
                                                                                   C, K, silu);
  CUDA_CHECK_LAUNCH();
  STRATA_LAUNCH((blocks_for((K + 1) * C), kThreads, 0, current_stream()), conv_bwd_dw_reduce_kernel)(dw, dbias, part.get(), nchunks, C, K);
  CUDA_CHECK_LAUNCH();
}

void conv1d_causal_step(float* y, float* state, const float* x, const float* w, const float* bias, int64_t B,
                        int64_t C, int64_t K, bool silu) {
  const int64_t total = B * C;
  if (total == 0) return;
  STRATA_LAUNCH((blocks_for(total), kThreads, 0, current_stream()), conv_step_kernel)(y, state, x, w, bias, C, K, silu, total);
  CUDA_CHECK_LAUNCH();
}

void conv1d_state_from_sequence(float* state, const float* x, int64_t B, int64_t T, int64_t C, int64_t K) {
  const int64_t total = B * C * (K - 1);
  if (total <= 0) return;
  STRATA_LAUNCH((blocks_for(total), kThreads, 0, current_stream()), conv_state_kernel)(state, x, T, C, K, total);
  CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
