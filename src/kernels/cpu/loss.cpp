// Fused softmax + cross-entropy over the vocabulary, one row per token, rows in parallel.
#include <bit>
#include <cmath>
#include <cstdint>

#include "core/error.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/loss.h"

namespace strata::cpu {
namespace {

// exp(x) for x <= 0 (the max-subtracted logits), relative error ~2e-7. glibc's expf is only
// vectorised under -ffast-math; this branch-free form (Cephes: x = n ln2 + r, degree-6 polynomial
// in r, 2^n built in the exponent bits) lets the compiler vectorise the row loops.
inline float exp_nonpos(float x) {
  x = x < -87.0f ? -87.0f : x;  // keeps 2^n a normal float; exp(-87) ~ 1.6e-38 is zero for softmax
  const float t = x * 1.44269504088896341f;
#ifdef __FAST_MATH__
  const float n = std::floor(t + 0.5f);
#else
  // Round to nearest by adding and removing 1.5 * 2^23: GCC vectorises floorf only under
  // -ffast-math (where this trick would be folded away, hence the #ifdef).
  const float n = (t + 12582912.0f) - 12582912.0f;
#endif
  float r = x - n * 0.693359375f;  // ln2 split in two so that n * ln2 is exact in the first part
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float scale = std::bit_cast<float>(uint32_t(int32_t(n) + 127) << 23);
  return p * scale;
}

inline float row_max(const float* x, int64_t V) {
  float m = x[0];
#pragma omp simd reduction(max : m)
  for (int64_t v = 0; v < V; ++v) m = x[v] > m ? x[v] : m;
  return m;
}

void check_targets(const int32_t* targets, int64_t N, int64_t V) {
  for (int64_t n = 0; n < N; ++n)
    STRATA_CHECK(targets[n] < V, "softmax_xent: target {} at row {} outside the vocabulary [0, {})", targets[n], n, V);
}

// Mean of losses over counted rows, summed in a fixed order (bit-exact across thread counts).
float mean_loss(const float* losses, const int32_t* targets, int64_t N) {
  double sum = 0;
  int64_t count = 0;
  for (int64_t n = 0; n < N; ++n)
    if (targets[n] >= 0) sum += losses[n], ++count;
  return count ? float(sum / double(count)) : 0.0f;
}

}  // namespace

// logits[N, V], targets[N] -> losses[N], dlogits[N, V] (may alias logits); returns the mean loss.
// loss = log(sum_v exp(x_v - max)) + max - x_t; dlogits = (softmax - onehot(t)) * dloss_scale.
STRATA_CPU_CLONES
float softmax_xent_forward_backward(float* losses, float* dlogits, const float* logits, const int32_t* targets,
                                    int64_t N, int64_t V, float dloss_scale) {
  check_targets(targets, N, V);
#pragma omp parallel for schedule(static) if (N * V > 16384)
  for (int64_t n = 0; n < N; ++n) {
    const float* x = logits + n * V;
    float* dx = dlogits + n * V;  // no restrict: may be x itself
    const int32_t t = targets[n];
    if (t < 0) {
      losses[n] = 0.0f;
      for (int64_t v = 0; v < V; ++v) dx[v] = 0.0f;
      continue;
    }
    const float m = row_max(x, V);
    const float xt = x[t];  // read before the row is overwritten in place
    // exp is evaluated once: the unnormalised probabilities are parked in dx and rescaled below.
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t v = 0; v < V; ++v) {
      const float e = exp_nonpos(x[v] - m);
      dx[v] = e;
      sum += e;
    }
    losses[n] = std::log(sum) + m - xt;
    const float s = dloss_scale / sum;
#pragma omp simd
    for (int64_t v = 0; v < V; ++v) dx[v] *= s;
    dx[t] -= dloss_scale;
  }
  return mean_loss(losses, targets, N);
}

// logits[N, V], targets[N] -> losses[N]; returns the mean loss over counted rows.
STRATA_CPU_CLONES
float softmax_xent_forward(float* losses, const float* logits, const int32_t* targets, int64_t N, int64_t V) {
  check_targets(targets, N, V);
#pragma omp parallel for schedule(static) if (N * V > 16384)
  for (int64_t n = 0; n < N; ++n) {
    const float* x = logits + n * V;
    const int32_t t = targets[n];
    if (t < 0) {
      losses[n] = 0.0f;
      continue;
    }
    const float m = row_max(x, V);
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t v = 0; v < V; ++v) sum += exp_nonpos(x[v] - m);
    losses[n] = std::log(sum) + m - x[t];
  }
  return mean_loss(losses, targets, N);
}

}  // namespace strata::cpu
