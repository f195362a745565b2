// AdamW over the flat parameter buffer, and the squared norm used for global gradient clipping.
#include <cmath>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/optim.h"

namespace strata::cpu {
namespace {

// params, grads, m, v, decay_mask[N]. Templated on the mask so that the hot loop has no branch
// and no null test per element.
template <bool kMask>
STRATA_CPU_CLONES
void adamw_loop(float* __restrict params, const float* __restrict grads, float* __restrict m, float* __restrict v,
                const uint8_t* __restrict mask, int64_t N, float lr, float b1, float b2, float eps, float lr_wd,
                float inv_bc1, float inv_sqrt_bc2, float gs) {
#pragma omp parallel for simd schedule(static) if (N > 65536)
  for (int64_t i = 0; i < N; ++i) {
    const float g = grads[i] * gs;
    const float mi = b1 * m[i] + (1.0f - b1) * g;
    const float vi = b2 * v[i] + (1.0f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float p = params[i];
    const float wd = kMask ? lr_wd * float(mask[i]) : lr_wd;
    // sqrt(v / bc2) = sqrt(v) / sqrt(bc2): one multiply instead of a divide per element.
    params[i] = p - lr * (mi * inv_bc1) / (std::sqrt(vi) * inv_sqrt_bc2 + eps) - wd * p;
  }
}

}  // namespace

// params, grads, m, v[N], decay_mask[N] or null. m and v start at zero; t counts steps from 1.
void adamw_update(float* params, const float* grads, float* m, float* v, const uint8_t* decay_mask, int64_t N,
                  float lr, float beta1, float beta2, float eps, float weight_decay, int64_t t, float grad_scale) {
  // Bias corrections in double: 1 - beta^t loses digits in float when beta is close to 1.
  const double bc1 = 1.0 - std::pow(double(beta1), double(t));
  const double bc2 = 1.0 - std::pow(double(beta2), double(t));
  const float inv_bc1 = float(1.0 / bc1), inv_sqrt_bc2 = float(1.0 / std::sqrt(bc2));
  const float lr_wd = lr * weight_decay;
  if (decay_mask)
    adamw_loop<true>(params, grads, m, v, decay_mask, N, lr, beta1, beta2, eps, lr_wd, inv_bc1, inv_sqrt_bc2,
                     grad_scale);
  else
    adamw_loop<false>(params, grads, m, v, nullptr, N, lr, beta1, beta2, eps, lr_wd, inv_bc1, inv_sqrt_bc2,
                      grad_scale);
}

// x[N] -> sum x^2 in double.
STRATA_CPU_CLONES
double sum_squares(const float* x, int64_t N) {
  // Fixed-size chunks summed in chunk order: OpenMP's reduction clause combines thread partials in
  // arrival order, which would make the clip scale (and so training) vary from run to run.
  constexpr int64_t kChunk = 1 << 16;
  const int64_t nchunks = (N + kChunk - 1) / kChunk;
  std::vector<double> parts(size_t(nchunks > 0 ? nchunks : 0));
#pragma omp parallel for schedule(static) if (nchunks > 1)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t i0 = c * kChunk, i1 = i0 + kChunk < N ? i0 + kChunk : N;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = i0; i < i1; ++i) s += double(x[i]) * double(x[i]);
    parts[c] = s;
  }
  double total = 0.0;
  for (int64_t c = 0; c < nchunks; ++c) total += parts[c];
  return total;
}

}  // namespace strata::cpu
