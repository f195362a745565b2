// Fused softmax + cross-entropy on CUDA (see loss.h; the CPU twin is kernels/cpu/loss.cpp).
//
// One block per row. Pass 1 reads the logits once with an online softmax (each thread keeps a
// running max m and a sum s rescaled whenever m grows), then the block merges the (m, s) pairs.
// The backward variant makes a second pass writing dlogits = exp(x - m) / s * scale in place: no
// second full-size buffer, logits read twice and written once. The mean over counted rows is a
// fixed-order reduction in double on the device; the caller gets it (and any out-of-range target,
// which the CPU twin reports too) with one small copy.
#include <cfloat>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/loss.h"

namespace strata::cuda {
namespace {

constexpr int kThreads = 256;

struct MaxSum {
  float m, s;
};

// Merge two online-softmax states; -inf maxima (no element seen) contribute nothing.
__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
  if (a.m == -INFINITY) return b;
  if (b.m == -INFINITY) return a;
  const float m = fmaxf(a.m, b.m);
  return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

__device__ MaxSum block_max_sum(MaxSum v, MaxSum* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    MaxSum other{__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
    v = merge(v, other);
  }
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  MaxSum r = lane < nwarps ? scratch[lane] : MaxSum{-INFINITY, 0.0f};
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    MaxSum other{__shfl_xor_sync(0xffffffffu, r.m, o), __shfl_xor_sync(0xffffffffu, r.s, o)};
    r = merge(r, other);
  }
  __syncthreads();
  return r;
}

// losses[n] = log(sum_v exp(x_v - m)) + m - x_t; with kBackward also dlogits (may alias logits).
// Ignored rows (t < 0) get loss 0 (and zero gradient); t >= V records the lowest such row in
// *bad_row and is treated like an ignored row.
template <bool kBackward>
__global__ void softmax_xent_kernel(float* __restrict__ losses, float* dlogits, const float* logits,
                                    const int32_t* __restrict__ targets, int64_t N, int64_t V, float dloss_scale,
                                    unsigned long long* bad_row) {
  STRATA_SHARED(MaxSum, scratch, [32]);
  STRATA_SHARED(float, xt_shared, );
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const float* x = logits + n * V;
    const int32_t t = targets[n];
    if (t < 0 || t >= V) {
      if (t >= V && threadIdx.x == 0) atomicMin(bad_row, (unsigned long long)n);
      if (threadIdx.x == 0) losses[n] = 0.0f;
      if (kBackward)
        for (int64_t v = threadIdx.x; v < V; v += blockDim.x) dlogits[n * V + v] = 0.0f;
      continue;
    }
    // x[t] is read before any thread overwrites the row (the merge below is a barrier).
    if (threadIdx.x == 0) xt_shared = x[t];
    MaxSum st{-INFINITY, 0.0f};
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
      const float xv = x[v];
      if (xv > st.m) {
        st.s = st.s * expf(st.m - xv) + 1.0f;  // st.m == -inf: 0 * 0 + 1
        st.m = xv;
      } else if (st.m != -INFINITY) {  // both -inf: exp(-inf) adds nothing (and -inf - -inf is NaN)
        st.s += expf(xv - st.m);
      }
    }
    const MaxSum row = block_max_sum(st, scratch);
    if (threadIdx.x == 0) losses[n] = logf(row.s) + row.m - xt_shared;
    if (kBackward) {
      float* dx = dlogits + n * V;
      const float s = dloss_scale / row.s;
      for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
        const float p = expf(x[v] - row.m) * s;
        dx[v] = v == t ? p - dloss_scale : p;
      }
    }
    __syncthreads();  // xt_shared and scratch are reused by the next row
  }
}

struct LossResult {
  float mean;
  unsigned long long bad_row;
};

// Mean of losses over rows with target >= 0, in double, fixed order (one block).
__global__ void mean_loss_kernel(LossResult* __restrict__ out, const float* __restrict__ losses,
                                 const int32_t* __restrict__ targets, int64_t N, const unsigned long long* bad_row) {
  STRATA_SHARED(double, scratch, [32]);
  double sum = 0.0, count = 0.0;
  for (int64_t n = threadIdx.x; n < N; n += blockDim.x)
    if (targets[n] >= 0) sum += double(losses[n]), count += 1.0;
  sum = block_sum(sum, scratch);
  count = block_sum(count, scratch);
  if (threadIdx.x == 0) {
    out->mean = count > 0 ? float(sum / count) : 0.0f;
    out->bad_row = *bad_row;
  }
}

template <bool kBackward>
float run(float* losses, float* dlogits, const float* logits, const int32_t* targets, int64_t N, int64_t V,
          float dloss_scale) {
  STRATA_CHECK(N >= 0 && V > 0, "softmax_xent: bad shape N={} V={}", N, V);
  if (N == 0) return 0.0f;
  cudaStream_t stream = current_stream();
  DeviceBuffer buf(sizeof(LossResult) + sizeof(unsigned long long), stream);
  auto* result = static_cast<LossResult*>(buf.data());
  auto* bad = reinterpret_cast<unsigned long long*>(result + 1);
  CUDA_CHECK(cudaMemsetAsync(bad, 0xff, sizeof(unsigned long long), stream));
  const unsigned grid = unsigned(N < 65535 * 16 ? N : 65535 * 16);
  STRATA_LAUNCH((grid, kThreads, 0, stream), softmax_xent_kernel<kBackward>)(losses, dlogits, logits, targets, N, V, dloss_scale,
                                                                bad);
  CUDA_CHECK_LAUNCH();
  STRATA_LAUNCH((1, kThreads, 0, stream), mean_loss_kernel)(result, losses, targets, N, bad);
  CUDA_CHECK_LAUNCH();
  LossResult host{};
  CUDA_CHECK(cudaMemcpyAsync(&host, result, sizeof(host), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  if (host.bad_row != ~0ull) {
    int32_t t = 0;
    CUDA_CHECK(cudaMemcpy(&t, targets + host.bad_row, sizeof(t), cudaMemcpyDeviceToHost));
    STRATA_CHECK(false, "softmax_xent: target {} at row {} outside the vocabulary [0, {})", t, host.bad_row, V);
  }
  return host.mean;
}

}  // namespace

float softmax_xent_forward_backward(float* losses, float* dlogits, const float* logits, const int32_t* targets,
                                    int64_t N, int64_t V, float dloss_scale) {
  return run<true>(losses, dlogits, logits, targets, N, V, dloss_scale);
}

float softmax_xent_forward(float* losses, const float* logits, const int32_t* targets, int64_t N, int64_t V) {
  return run<false>(losses, nullptr, logits, targets, N, V, 0.0f);
}

}  // namespace strata::cuda
