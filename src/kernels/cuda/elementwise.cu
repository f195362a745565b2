// Residual adds, scaling and copies on CUDA (see elementwise.h; the CPU twin is
// kernels/cpu/elementwise.cpp): grid-stride loops, one pass.
#include "core/dtype.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/elementwise.h"

namespace strata::cuda {
namespace {

#define STRATA_GRID_STRIDE(i, N) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (N); i += int64_t(gridDim.x) * blockDim.x)

__global__ void add_inplace_kernel(float* __restrict__ y, const float* __restrict__ x, int64_t N) {
  STRATA_GRID_STRIDE(i, N) y[i] += x[i];
}
__global__ void scale_inplace_kernel(float* x, float s, int64_t N) {
  STRATA_GRID_STRIDE(i, N) x[i] *= s;
}
__global__ void mul_add_inplace_kernel(float* __restrict__ y, const float* __restrict__ a,
                                       const float* __restrict__ b, int64_t N) {
  STRATA_GRID_STRIDE(i, N) y[i] += a[i] * b[i];
}
__global__ void neg_exp_kernel(float* out, const float* x, int64_t N) {
  STRATA_GRID_STRIDE(i, N) out[i] = -expf(x[i]);
}

__global__ void copy_strided_kernel(float* __restrict__ dst, int64_t dst_ld, const float* __restrict__ src,
                                    int64_t src_ld, int64_t rows, int64_t cols) {
  STRATA_GRID_STRIDE(i, rows * cols) {
    const int64_t r = i / cols, c = i % cols;
    dst[r * dst_ld + c] = src[r * src_ld + c];
  }
}

// One thread per destination element; the source index follows the pair order.
__global__ void copy_strided_pairs_kernel(float* __restrict__ dst, int64_t dst_ld, const float* __restrict__ src,
                                          int64_t src_ld, int64_t rows, int64_t cols, bool split_pairs) {
  const int64_t half = cols / 2;
  STRATA_GRID_STRIDE(i, rows * cols) {
    const int64_t r = i / cols, c = i % cols;
    const int64_t from = split_pairs ? (c < half ? 2 * c : 2 * (c - half) + 1) : (c % 2 == 0 ? c / 2 : half + c / 2);
    dst[r * dst_ld + c] = src[r * src_ld + from];
  }
}

__global__ void add_strided_kernel(float* __restrict__ dst, int64_t dst_ld, const float* __restrict__ src,
                                   int64_t src_ld, int64_t rows, int64_t cols) {
  STRATA_GRID_STRIDE(i, rows * cols) {
    const int64_t r = i / cols, c = i % cols;
    dst[r * dst_ld + c] += src[r * src_ld + c];
  }
}

// The CPU twin's rounding itself (core/dtype.h), so the CPU and CUDA shadows agree bit for bit.
__global__ void cast_f32_to_bf16_kernel(uint16_t* __restrict__ out, const float* __restrict__ in, int64_t N) {
  STRATA_GRID_STRIDE(i, N) out[i] = f32_to_bf16(in[i]);
}

#undef STRATA_GRID_STRIDE

}  // namespace

void add_inplace(float* y, const float* x, int64_t N) {
  if (N <= 0) return;
  STRATA_LAUNCH((grid_1d(N), kBlock1d, 0, current_stream()), add_inplace_kernel)(y, x, N);
  CUDA_CHECK_LAUNCH();
}

void scale_inplace(float* x, float s, int64_t N) {
  if (N <= 0) return;
  STRATA_LAUNCH((grid_1d(N), kBlock1d, 0, current_stream()), scale_inplace_kernel)(x, s, N);
  CUDA_CHECK_LAUNCH();
}

void mul_add_inplace(float* y, const float* a, const float* b, int64_t N) {
  if (N <= 0) return;
  STRATA_LAUNCH((grid_1d(N), kBlock1d, 0, current_stream()), mul_add_inplace_kernel)(y, a, b, N);
  CUDA_CHECK_LAUNCH();
}

void neg_exp(float* out, const float* x, int64_t N) {
  if (N <= 0) return;
  STRATA_LAUNCH((grid_1d(N), kBlock1d, 0, current_stream()), neg_exp_kernel)(out, x, N);
  CUDA_CHECK_LAUNCH();
}

void copy_f32(float* dst, const float* src, int64_t N) {
  if (N > 0) copy_on_device(dst, src, sizeof(float) * size_t(N));
}

void copy_strided(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  if (dst_ld == cols && src_ld == cols) return copy_f32(dst, src, rows * cols);
  STRATA_LAUNCH((grid_1d(rows * cols), kBlock1d, 0, current_stream()), copy_strided_kernel)(dst, dst_ld, src, src_ld, rows, cols);
  CUDA_CHECK_LAUNCH();
}

void copy_strided_pairs(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows, int64_t cols,
                        bool split_pairs) {
  STRATA_CHECK(cols % 2 == 0, "copy_strided_pairs: cols = {} must be even (pairs)", cols);
  if (rows <= 0 || cols <= 0) return;
  STRATA_LAUNCH((grid_1d(rows * cols), kBlock1d, 0, current_stream()), copy_strided_pairs_kernel)(dst, dst_ld, src, src_ld, rows,
                                                                                      cols, split_pairs);
  CUDA_CHECK_LAUNCH();
}

void add_strided(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  STRATA_LAUNCH((grid_1d(rows * cols), kBlock1d, 0, current_stream()), add_strided_kernel)(dst, dst_ld, src, src_ld, rows, cols);
  CUDA_CHECK_LAUNCH();
}

void cast_f32_to_bf16(uint16_t* out, const float* in, int64_t n) {
  if (n <= 0) return;
  STRATA_LAUNCH((grid_1d(n), kBlock1d, 0, current_stream()), cast_f32_to_bf16_kernel)(out, in, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
