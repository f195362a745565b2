#pragma once
// Device helpers shared by the CUDA twins: warp/block reductions, the math the CPU twins use
// (sigmoid without overflow), and a deterministic column reduction (out[d] += sum_n f(n, d)) for
// weight and bias gradients. Every reduction here has a fixed order, so a result is bitwise the same
// from run to run on one device (the CPU twins promise the same, for bit-exact resume).
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/runtime.h"

namespace strata::cuda {

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` holds 32 values of T in shared memory; the call synchronises the block twice.
template <class T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T r = lane < nwarps ? scratch[lane] : T(0);
  r = warp_sum(r);
  __syncthreads();  // scratch may be reused by the caller right after
  return r;
}

// sigmoid(x) from e = exp(-|x|) <= 1: nothing overflows for large |x| (as the CPU twins).
__device__ __forceinline__ float sigmoidf_stable(float x) {
  const float e = expf(-fabsf(x));
  const float r = 1.0f / (1.0f + e);
  return x >= 0.0f ? r : e * r;
}

// ---- deterministic column sums ---------------------------------------------------------------
// out[d] += sum_{n < N} f(n, d) for d < D, f a device functor. Rows are cut into chunks of
// kColChunkRows; a (32 x 8)-thread block sums one chunk for 32 columns (each thread a fixed stride
// of rows, then a fixed tree over the 8), writing partial[chunk, d]; a second kernel adds the
// partials in chunk order. Coalesced over d, no atomics.
constexpr int kColChunkRows = 128;

template <class F>
__global__ void column_partial_kernel(float* __restrict__ partial, int64_t N, int64_t D, F f) {
  STRATA_SHARED(float, red, [8][33]);
  const int64_t d = int64_t(blockIdx.x) * 32 + threadIdx.x;
  const int64_t n0 = int64_t(blockIdx.y) * kColChunkRows;
  const int64_t n1 = n0 + kColChunkRows < N ? n0 + kColChunkRows : N;
  float acc = 0.0f;
  if (d < D)
    for (int64_t n = n0 + threadIdx.y; n < n1; n += 8) acc += f(n, d);
  red[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && d < D) {
    float s = red[0][threadIdx.x];
#pragma unroll
    for (int y = 1; y < 8; ++y) s += red[y][threadIdx.x];
    partial[int64_t(blockIdx.y) * D + d] = s;
  }
}

// out[d] += partial[0, d] + partial[1, d] + ... in chunk order. (A template so that every .cu
// that includes this header gets its own instance without relocatable device code.)
template <class T = float>
__global__ void column_finalize_kernel(T* __restrict__ out, const T* __restrict__ partial, int64_t nchunks,
                                       int64_t D) {
  for (int64_t d = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; d < D; d += int64_t(gridDim.x) * blockDim.x) {
    T s = partial[d];
    for (int64_t c = 1; c < nchunks; ++c) s += partial[c * D + d];
    out[d] += s;
  }
}

template <class F>
void column_sum_accumulate(float* out, int64_t N, int64_t D, F f, cudaStream_t stream) {
  if (N <= 0 || D <= 0) return;
  const int64_t nchunks = (N + kColChunkRows - 1) / kColChunkRows;
  STRATA_CHECK(nchunks <= 65535, "column_sum_accumulate: {} rows is more than this kernel's grid allows", N);
  DeviceBuffer partial(size_t(nchunks * D) * sizeof(float), stream);
  float* p = static_cast<float*>(partial.data());
  const dim3 grid(unsigned((D + 31) / 32), unsigned(nchunks));
  STRATA_LAUNCH((grid, dim3(32, 8), 0, stream), column_partial_kernel<F>)(p, N, D, f);
  CUDA_CHECK_LAUNCH();
  STRATA_LAUNCH((grid_1d(D), kBlock1d, 0, stream), column_finalize_kernel<float>)(out, p, nchunks, D);
  CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
