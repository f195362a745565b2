// RMSNorm and Mamba-2's gated RMSNorm on CUDA (see norm.h; the CPU twins are
// kernels/cpu/norm.cpp and norm_gated.cpp).
//
// One warp per row (or per (row, group) for the gated norm): lanes stride the channels, the sum of
// squares is accumulated in fp32 per lane and combined by shuffles, so there is no shared memory
// and no block-wide barrier. The weight gradient is a deterministic column sum over rows
// (common.cuh), not atomics.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/norm.h"

namespace strata::cuda {
namespace {

constexpr int kWarps = 8;  // rows per 256-thread block

__device__ __forceinline__ int64_t warp_item() { return int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5); }
__device__ __forceinline__ int64_t warp_item_stride() { return int64_t(gridDim.x) * kWarps; }

unsigned warp_grid(int64_t items) {
  int64_t g = (items + kWarps - 1) / kWarps;
  return unsigned(g < 1 ? 1 : (g > 65535LL * 16 ? 65535LL * 16 : g));
}

// y = x * r * w with r = (mean(x^2) + eps)^-1/2;  rstd[n] = r.
// No __restrict__ on y / x (or dx / dy below): a caller may normalise in place; every lane rereads
// only the elements it wrote, so aliasing is safe.
__global__ void rmsnorm_forward_kernel(float* y, float* __restrict__ rstd, const float* x,
                                       const float* __restrict__ w, int64_t N, int64_t D, float eps) {
  const int lane = threadIdx.x & 31;
  for (int64_t n = warp_item(); n < N; n += warp_item_stride()) {
    const float* xr = x + n * D;
    float ss = 0.0f;
    for (int64_t d = lane; d < D; d += 32) ss += xr[d] * xr[d];
    ss = warp_sum(ss);
    const float r = 1.0f / sqrtf(ss / float(D) + eps);
    if (lane == 0) rstd[n] = r;
    float* yr = y + n * D;
    for (int64_t d = lane; d < D; d += 32) yr[d] = xr[d] * r * w[d];
  }
}

// dx = r w dy - x r^3 (sum_d w dy x) / D   (the x-dependence of r adds the second term).
__global__ void rmsnorm_backward_dx_kernel(float* dx, const float* dy, const float* __restrict__ x, const float* __restrict__ w,
                                           const float* __restrict__ rstd, int64_t N, int64_t D) {
  const int lane = threadIdx.x & 31;
  for (int64_t n = warp_item(); n < N; n += warp_item_stride()) {
    const float* xr = x + n * D;
    const float* gr = dy + n * D;
    float dot = 0.0f;
    for (int64_t d = lane; d < D; d += 32) dot += w[d] * gr[d] * xr[d];
    dot = warp_sum(dot);
    const float r = rstd[n];
    const float k = r * r * r * dot / float(D);
    float* dxr = dx + n * D;
    for (int64_t d = lane; d < D; d += 32) dxr[d] = r * w[d] * gr[d] - k * xr[d];
  }
}

struct RmsnormDw {  // dw[d] += sum_n dy x r
  const float *dy, *x, *rstd;
  int64_t D;
  __device__ float operator()(int64_t n, int64_t d) const { return dy[n * D + d] * x[n * D + d] * rstd[n]; }
};

// Gated: g = x silu(z); per group of `group` channels y = g r w, r = (mean_group(g^2) + eps)^-1/2.
// One warp per (row, group); y holds g between the two passes (each lane rereads only its own).
__global__ void rmsnorm_gated_forward_kernel(float* y, float* __restrict__ rstd, const float* x, const float* __restrict__ z,
                                             const float* __restrict__ w, int64_t N, int64_t D, int64_t group,
                                             float eps) {
  const int lane = threadIdx.x & 31;
  const int64_t ng = D / group;
  for (int64_t item = warp_item(); item < N * ng; item += warp_item_stride()) {
    const int64_t n = item / ng, k = item % ng, o = n * D + k * group;
    float ss = 0.0f;
    for (int64_t d = lane; d < group; d += 32) {
      const float zz = z[o + d];
      const float g = x[o + d] * zz * sigmoidf_stable(zz);
      y[o + d] = g;
      ss += g * g;
    }
    ss = warp_sum(ss);
    const float r = 1.0f / sqrtf(ss / float(group) + eps);
    if (lane == 0) rstd[item] = r;  // rstd[n, k] at n * ng + k == item
    const float* wk = w + k * group;
    for (int64_t d = lane; d < group; d += 32) y[o + d] = y[o + d] * r * wk[d];
  }
}

// dg = r w dy - g r^3 dot / group (dot = sum w dy g over the group); dx = dg silu(z),
// dz = dg x silu'(z) with silu'(z) = s (1 + z (1 - s)).
__global__ void rmsnorm_gated_backward_kernel(float* __restrict__ dx, float* __restrict__ dz,
                                              const float* __restrict__ dy, const float* __restrict__ x,
                                              const float* __restrict__ z, const float* __restrict__ w,
                                              const float* __restrict__ rstd, int64_t N, int64_t D, int64_t group) {
  const int lane = threadIdx.x & 31;
  const int64_t ng = D / group;
  for (int64_t item = warp_item(); item < N * ng; item += warp_item_stride()) {
    const int64_t n = item / ng, k = item % ng, o = n * D + k * group;
    const float* wk = w + k * group;
    float dot = 0.0f;
    for (int64_t d = lane; d < group; d += 32) {
      const float zz = z[o + d];
      dot += wk[d] * dy[o + d] * (x[o + d] * zz * sigmoidf_stable(zz));
    }
    dot = warp_sum(dot);
    const float r = rstd[item];
    const float kk = r * r * r * dot / float(group);
    for (int64_t d = lane; d < group; d += 32) {
      const float zz = z[o + d], xx = x[o + d], s = sigmoidf_stable(zz);
      const float g = xx * zz * s;
      const float dg = r * wk[d] * dy[o + d] - kk * g;
      dx[o + d] = dg * zz * s;
      dz[o + d] = dg * xx * s * (1.0f + zz * (1.0f - s));
    }
  }
}

struct GatedDw {  // dw[d] += sum_n dy g r, g recomputed from x and z
  const float *dy, *x, *z, *rstd;
  int64_t D, group;
  __device__ float operator()(int64_t n, int64_t d) const {
    const int64_t i = n * D + d;
    const float zz = z[i];
    const float g = x[i] * zz * sigmoidf_stable(zz);
    return dy[i] * g * rstd[n * (D / group) + d / group];
  }
};

void check_gated(const char* what, int64_t N, int64_t D, int64_t group) {
  STRATA_CHECK(N >= 0 && D >= 0 && group > 0 && D % group == 0, "{}: group {} must divide D {} (N = {})", what, group,
               D, N);
}

}  // namespace

void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int64_t N, int64_t D, float eps) {
  if (N <= 0) return;
  STRATA_LAUNCH((warp_grid(N), 32 * kWarps, 0, current_stream()), rmsnorm_forward_kernel)(y, rstd, x, w, N, D, eps);
  CUDA_CHECK_LAUNCH();
}

void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* w, const float* rstd,
                      int64_t N, int64_t D) {
  if (N <= 0) return;
  cudaStream_t stream = current_stream();
  STRATA_LAUNCH((warp_grid(N), 32 * kWarps, 0, stream), rmsnorm_backward_dx_kernel)(dx, dy, x, w, rstd, N, D);
  CUDA_CHECK_LAUNCH();
  column_sum_accumulate(dw, N, D, RmsnormDw{dy, x, rstd, D}, stream);
}

void rmsnorm_gated_forward(float* y, float* rstd, const float* x, const float* z, const float* w, int64_t N,
                           int64_t D, int64_t group, float eps) {
  check_gated("cuda::rmsnorm_gated_forward", N, D, group);
  if (N == 0 || D == 0) return;
  STRATA_LAUNCH((warp_grid(N * (D / group)), 32 * kWarps, 0, current_stream()), rmsnorm_gated_forward_kernel)(y, rstd, x, z, w, N,
                                                                                                  D, group, eps);
  CUDA_CHECK_LAUNCH();
}

void rmsnorm_gated_backward(float* dx, float* dz, float* dw, const float* dy, const float* x, const float* z,
                            const float* w, const float* rstd, int64_t N, int64_t D, int64_t group) {
  check_gated("cuda::rmsnorm_gated_backward", N, D, group);
  if (N == 0 || D == 0) return;
  cudaStream_t stream = current_stream();
  STRATA_LAUNCH((warp_grid(N * (D / group)), 32 * kWarps, 0, stream), rmsnorm_gated_backward_kernel)(dx, dz, dy, x, z, w, rstd, N,
                                                                                         D, group);
  CUDA_CHECK_LAUNCH();
  column_sum_accumulate(dw, N, D, GatedDw{dy, x, z, rstd, D, group}, stream);
}

}  // namespace strata::cuda
