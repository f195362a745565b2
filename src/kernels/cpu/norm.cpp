// RMSNorm forward/backward (the gated Mamba-2 variant lives in norm_gated.cpp).
#include <cmath>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/norm.h"

namespace strata::cpu {

// y = x * r * w with r = (mean(x^2) + eps)^-1/2.   x[N, D], w[D] -> y[N, D], rstd[N] = r (saved for backward).
STRATA_CPU_CLONES
void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int64_t N, int64_t D, float eps) {
#pragma omp parallel for schedule(static) if (N * D > 16384)
  for (int64_t n = 0; n < N; ++n) {
    const float* xr = x + n * D;
    float* yr = y + n * D;
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int64_t d = 0; d < D; ++d) ss += xr[d] * xr[d];
    const float r = 1.0f / std::sqrt(ss / float(D) + eps);
    rstd[n] = r;
    for (int64_t d = 0; d < D; ++d) yr[d] = xr[d] * r * w[d];
  }
}

// With g = w * dy and xhat = x * r:  dx = r * (g - xhat * mean(g * xhat)),  dw += sum_n dy * xhat.
// dx[N, D] assigned, dw[D] accumulated.
STRATA_CPU_CLONES
void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* w, const float* rstd,
                      int64_t N, int64_t D) {
  // dw is summed per fixed chunk of rows in the same pass as dx (x and dy are read once), then the
  // chunk partials are added in chunk order: no atomics, and the result does not depend on the
  // thread count (bit-exact resume).
  constexpr int64_t kRows = 64;
  const int64_t nchunks = (N + kRows - 1) / kRows;
  std::vector<float> partial(size_t(nchunks * D), 0.0f);
  const bool par = N * D > 16384;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t c = 0; c < nchunks; ++c) {
    float* __restrict acc = partial.data() + c * D;
    const int64_t n1 = (c + 1) * kRows < N ? (c + 1) * kRows : N;
    for (int64_t n = c * kRows; n < n1; ++n) {
      const float* xr = x + n * D;
      const float* gr = dy + n * D;
      float* dxr = dx + n * D;
      const float r = rstd[n];
      float dot = 0.0f;  // sum_d w dy x
#pragma omp simd reduction(+ : dot)
      for (int64_t d = 0; d < D; ++d) dot += w[d] * gr[d] * xr[d];
      // d r / d x_d = -r^3 x_d / D, so the x-dependence of r contributes -x * r^3 * dot / D.
      const float k = r * r * r * dot / float(D);
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) {
        dxr[d] = r * w[d] * gr[d] - k * xr[d];
        acc[d] += gr[d] * xr[d] * r;
      }
    }
  }
  // Chunk order, contiguous rows: (((p0 + p1) + p2) + ...) for every channel, vectorised over d.
  float* sum = partial.data();
  for (int64_t c = 1; c < nchunks; ++c)
    for (int64_t d = 0; d < D; ++d) sum[d] += partial[c * D + d];
  for (int64_t d = 0; d < D; ++d) dw[d] += sum[d];
}

}  // namespace strata::cpu
