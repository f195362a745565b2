#pragma once
// Branch-free exp / softplus / sigmoid for the SSM kernels (conv1d, selective scan). glibc's expf and
// log1pf are vectorised only under -ffast-math, and these kernels evaluate one exp per (token,
// channel, state): written as plain arithmetic with selects, the compiler vectorises the loops that
// call them. Relative error ~2e-7 (Cephes polynomials).
#include <bit>
#include <cstdint>

namespace strata::cpu::ssm_math {

// exp(x) for x <= 0, which is all these kernels need (dt * A with A < 0, and exp(-|x|)); correct up
// to x = 88 all the same. Underflow is handled on the integer exponent (2^n with n < -126 becomes 0)
// rather than by clamping x: a float clamp makes GCC predicate the whole polynomial on a mask.
// Exact to ~2e-7 relative for x > -87.3, 0 below; valid for x > -7e8 (where n stays accurate).
inline float exp_nonpos(float x) {
  const float t = x * 1.44269504088896341f;
#ifdef __FAST_MATH__
  const float n = __builtin_floorf(t + 0.5f);
#else
  // Round to nearest by adding and removing 1.5 * 2^23 (GCC vectorises floorf only under fast-math,
  // where this trick would be folded away).
  const float n = (t + 12582912.0f) - 12582912.0f;
#endif
  float r = x - n * 0.693359375f;  // ln2 split so that n * ln2_hi is exact
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t e = int32_t(n) + 127;
  e = e < 0 ? 0 : e;  // biased exponent 0 with a zero mantissa is +0.0
  return p * std::bit_cast<float>(uint32_t(e) << 23);
}

// log(y) for 1 <= y <= 2 (all softplus needs): y = m * 2^k with m in [sqrt(1/2), sqrt(2)).
inline float log_1to2(float y) {
  const bool big = y > 1.41421356f;
  const float m = big ? y * 0.5f : y;
  const float k = big ? 1.0f : 0.0f;
  const float f = m - 1.0f;
  const float z = f * f;
  float p = 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  float r = f * z * p;
  r += -2.12194440e-4f * k;
  r += -0.5f * z;
  return f + r + 0.693359375f * k;
}

// log(1 + e) for 0 <= e <= 1, accurate for tiny e too: log(u) * e / (u - 1) with u = fl(1 + e)
// cancels the rounding of 1 + e (Goldberg's trick); u == 1 means log1p(e) = e to float precision.
inline float log1p_01(float e) {
  const float u = 1.0f + e;
  const float d = u - 1.0f;
  const float l = log_1to2(u);
  return d == 0.0f ? e : l * (e / d);
}

// softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow, exact sign handling.
inline float softplus(float x) {
  const float ax = x < 0.0f ? -x : x;
  return (x > 0.0f ? x : 0.0f) + log1p_01(exp_nonpos(-ax));
}

// sigmoid(x) from e = exp(-|x|) <= 1, so nothing overflows for large |x|.
inline float sigmoid(float x) {
  const float ax = x < 0.0f ? -x : x;
  const float e = exp_nonpos(-ax);
  const float r = 1.0f / (1.0f + e);
  return x >= 0.0f ? r : e * r;
}

}  // namespace strata::cpu::ssm_math
