// AdamW over the flat parameter buffer and the squared gradient norm, on CUDA (see optim.h; the
// CPU twin is kernels/cpu/optim.cpp). One fused elementwise kernel for the update; a two-pass
// fixed-order reduction in double for the norm, so the clip scale (and training) is reproducible.
#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/optim.h"

namespace strata::cuda {
namespace {

template <bool kMask>
__global__ void adamw_kernel(float* __restrict__ params, const float* __restrict__ grads, float* __restrict__ m,
                             float* __restrict__ v, const uint8_t* __restrict__ mask, int64_t N, float lr, float b1,
                             float b2, float eps, float lr_wd, float inv_bc1, float inv_sqrt_bc2, float gs) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < N; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = grads[i] * gs;
    const float mi = b1 * m[i] + (1.0f - b1) * g;
    const float vi = b2 * v[i] + (1.0f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float p = params[i];
    const float wd = kMask ? lr_wd * float(mask[i]) : lr_wd;
    params[i] = p - lr * (mi * inv_bc1) / (sqrtf(vi) * inv_sqrt_bc2 + eps) - wd * p;
  }
}

constexpr int64_t kChunk = int64_t(1) << 16;  // elements per first-pass block (as the CPU twin's chunks)
constexpr int kThreads = 256;

// partial[c] = sum of x[i]^2 over chunk c, in double: per-thread strided sums, then a fixed tree.
__global__ void sum_squares_partial_kernel(double* __restrict__ partial, const float* __restrict__ x, int64_t N) {
  STRATA_SHARED(double, scratch, [32]);
  const int64_t i0 = int64_t(blockIdx.x) * kChunk;
  const int64_t i1 = i0 + kChunk < N ? i0 + kChunk : N;
  double s = 0.0;
  for (int64_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) s += double(x[i]) * double(x[i]);
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sum_partials_kernel(double* __restrict__ out, const double* __restrict__ partial, int64_t n) {
  STRATA_SHARED(double, scratch, [32]);
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += partial[i];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) *out = s;
}

}  // namespace

void adamw_update(float* params, const float* grads, float* m, float* v, const uint8_t* decay_mask, int64_t N,
                  float lr, float beta1, float beta2, float eps, float weight_decay, int64_t t, float grad_scale) {
  if (N <= 0) return;
  // Bias corrections in double on the host, exactly as the CPU twin computes them.
  const double bc1 = 1.0 - std::pow(double(beta1), double(t));
  const double bc2 = 1.0 - std::pow(double(beta2), double(t));
  const float inv_bc1 = float(1.0 / bc1), inv_sqrt_bc2 = float(1.0 / std::sqrt(bc2));
  const float lr_wd = lr * weight_decay;
  cudaStream_t stream = current_stream();
  if (decay_mask)
    STRATA_LAUNCH((grid_1d(N), kBlock1d, 0, stream), adamw_kernel<true>)(params, grads, m, v, decay_mask, N, lr, beta1, beta2, eps,
                                                            lr_wd, inv_bc1, inv_sqrt_bc2, grad_scale);
  else
    STRATA_LAUNCH((grid_1d(N), kBlock1d, 0, stream), adamw_kernel<false>)(params, grads, m, v, nullptr, N, lr, beta1, beta2, eps,
                                                             lr_wd, inv_bc1, inv_sqrt_bc2, grad_scale);
  CUDA_CHECK_LAUNCH();
}

double sum_squares(const float* x, int64_t N) {
  if (N <= 0) return 0.0;
  const int64_t nchunks = (N + kChunk - 1) / kChunk;
  STRATA_CHECK(nchunks <= (int64_t(1) << 31) - 1, "cuda::sum_squares: {} elements is too many", N);
  cudaStream_t stream = current_stream();
  DeviceBuffer buf(size_t(nchunks + 1) * sizeof(double), stream);
  double* partial = static_cast<double*>(buf.data());
  double* total = partial + nchunks;
  STRATA_LAUNCH((unsigned(nchunks), kThreads, 0, stream), sum_squares_partial_kernel)(partial, x, N);
  CUDA_CHECK_LAUNCH();
  STRATA_LAUNCH((1, kThreads, 0, stream), sum_partials_kernel)(total, partial, nchunks);
  CUDA_CHECK_LAUNCH();
  double result = 0.0;
  CUDA_CHECK(cudaMemcpyAsync(&result, total, sizeof(double), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  return result;
}

}  // namespace strata::cuda
