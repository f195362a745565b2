// Gated RMSNorm of Mamba-2 (mamba_ssm RMSNormGated, norm_before_gate=False): the gate is applied
// before the norm, and the rms is taken per group of channels (one group per B/C group).
#include <cmath>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/scan_math.h"

namespace strata::cpu {

using ssm_math::sigmoid;

// g = x * silu(z);  y = g * r * w with r = (mean_group(g^2) + eps)^-1/2.
// x, z[N, D], w[D] -> y[N, D], rstd[N, D/group] = r (saved for backward).
STRATA_CPU_CLONES
void rmsnorm_gated_forward(float* y, float* rstd, const float* x, const float* z, const float* w, int64_t N,
                           int64_t D, int64_t group, float eps) {
  const int64_t ng = D / group;
#pragma omp parallel for schedule(static) if (N * D > 16384)
  for (int64_t n = 0; n < N; ++n) {
    const float* __restrict xr = x + n * D;
    const float* __restrict zr = z + n * D;
    float* __restrict yr = y + n * D;
    // y doubles as the buffer for g: it is overwritten by the scaled value in the second pass.
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) yr[d] = xr[d] * zr[d] * sigmoid(zr[d]);
    for (int64_t k = 0; k < ng; ++k) {
      float* __restrict gk = yr + k * group;
      float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
      for (int64_t d = 0; d < group; ++d) ss += gk[d] * gk[d];
      const float r = 1.0f / std::sqrt(ss / float(group) + eps);
      rstd[n * ng + k] = r;
      const float* __restrict wk = w + k * group;
#pragma omp simd
      for (int64_t d = 0; d < group; ++d) gk[d] = gk[d] * r * wk[d];
    }
  }
}

// Per group, with g = x silu(z) and dot = sum w dy g:  dg = r w dy - g r^3 dot / group;
// then dx = dg silu(z), dz = dg x silu'(z), silu'(z) = s (1 + z (1 - s)), and dw += dy g r.
// dx, dz[N, D] assigned; dw[D] accumulated.
STRATA_CPU_CLONES
void rmsnorm_gated_backward(float* dx, float* dz, float* dw, const float* dy, const float* x, const float* z,
                            const float* w, const float* rstd, int64_t N, int64_t D, int64_t group) {
  const int64_t ng = D / group;
  // dw is summed per fixed chunk of rows, then the partials in chunk order: no atomics, and the
  // result does not depend on the thread count (bit-exact resume).
  constexpr int64_t kRows = 64;
  const int64_t nchunks = (N + kRows - 1) / kRows;
  std::vector<float> partial(size_t(nchunks * D), 0.0f);
#pragma omp parallel for schedule(static) if (N * D > 16384)
  for (int64_t c = 0; c < nchunks; ++c) {
    float* __restrict acc = partial.data() + c * D;
    const int64_t n1 = (c + 1) * kRows < N ? (c + 1) * kRows : N;
    for (int64_t n = c * kRows; n < n1; ++n) {
      const float* __restrict xr = x + n * D;
      const float* __restrict zr = z + n * D;
      const float* __restrict gr = dy + n * D;
      // dx holds g until the gradient replaces it, so g is computed once per element.
      float* __restrict dxr = dx + n * D;
      float* __restrict dzr = dz + n * D;
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) dxr[d] = xr[d] * zr[d] * sigmoid(zr[d]);
      for (int64_t k = 0; k < ng; ++k) {
        const int64_t o = k * group;
        const float r = rstd[n * ng + k];
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int64_t d = o; d < o + group; ++d) dot += w[d] * gr[d] * dxr[d];
        const float kk = r * r * r * dot / float(group);
#pragma omp simd
        for (int64_t d = o; d < o + group; ++d) {
          const float g = dxr[d];
          const float dg = r * w[d] * gr[d] - kk * g;
          acc[d] += gr[d] * g * r;
          const float s = sigmoid(zr[d]);
          dxr[d] = dg * zr[d] * s;
          dzr[d] = dg * xr[d] * s * (1.0f + zr[d] * (1.0f - s));
        }
      }
    }
  }
  float* sum = partial.data();
  for (int64_t c = 1; c < nchunks; ++c)
    for (int64_t d = 0; d < D; ++d) sum[d] += partial[c * D + d];
  for (int64_t d = 0; d < D; ++d) dw[d] += sum[d];
}

}  // namespace strata::cpu
