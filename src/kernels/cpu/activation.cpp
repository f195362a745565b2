// SiLU and SwiGLU, elementwise. Memory-bound: one pass, vectorised, threads only for large N.
#include <bit>
#include <cstdint>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/isa.h"

namespace strata::cpu {
namespace {

// Below this many elements the threads cost more than they save (a few microseconds of work).
constexpr int64_t kParallelMin = int64_t(1) << 15;

// exp(x) for x <= 0, relative error ~2e-7. glibc's expf is vectorised only under -ffast-math; this
// branch-free form (Cephes: x = n ln2 + r, degree-6 polynomial, 2^n built in the exponent bits)
// lets GCC vectorise the loops below. Same scheme as loss.cpp's, kept local so the files stay
// independent.
inline float exp_nonpos(float x) {
  x = x < -87.0f ? -87.0f : x;  // keeps 2^n a normal float; the sigmoid of -87 is 0 to fp32 anyway
  const float t = x * 1.44269504088896341f;
#ifdef __FAST_MATH__
  const float n = __builtin_floorf(t + 0.5f);
#else
  const float n = (t + 12582912.0f) - 12582912.0f;  // round to nearest via 1.5 * 2^23
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
  return p * std::bit_cast<float>(uint32_t(int32_t(n) + 127) << 23);
}

// sigmoid(x) from e = exp(-|x|) <= 1, so nothing overflows for either sign:
// x >= 0: 1 / (1 + e);  x < 0: e / (1 + e).
inline float sigmoid(float x) {
  const float e = exp_nonpos(x < 0.0f ? x : -x);
  const float r = 1.0f / (1.0f + e);
  return x >= 0.0f ? r : e * r;
}

}  // namespace

// out = silu(gate) * up.   gate, up, out[N]
STRATA_CPU_CLONES
void swiglu_forward(float* out, const float* gate, const float* up, int64_t N) {
#pragma omp parallel for simd schedule(static) if (N > kParallelMin)
  for (int64_t i = 0; i < N; ++i) {
    const float g = gate[i];
    out[i] = g * sigmoid(g) * up[i];
  }
}

// silu'(g) = s (1 + g (1 - s)) with s = sigmoid(g).  dgate = dout * up * silu'(g), dup = dout * silu(g).
// dgate, dup[N] assigned.
STRATA_CPU_CLONES
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t N) {
#pragma omp parallel for simd schedule(static) if (N > kParallelMin)
  for (int64_t i = 0; i < N; ++i) {
    const float g = gate[i], s = sigmoid(g), d = dout[i];
    const float u = up[i];  // read before the writes, in case a caller aliases dup with up
    dup[i] = d * g * s;
    dgate[i] = d * u * s * (1.0f + g * (1.0f - s));
  }
}

// out = x * sigmoid(x).   x, out[N]; out may equal x.
STRATA_CPU_CLONES
void silu_forward(float* out, const float* x, int64_t N) {
#pragma omp parallel for simd schedule(static) if (N > kParallelMin)
  for (int64_t i = 0; i < N; ++i) {
    const float v = x[i];
    out[i] = v * sigmoid(v);
  }
}

// dx = dout * s (1 + x (1 - s)).   dx[N] assigned.
STRATA_CPU_CLONES
void silu_backward(float* dx, const float* dout, const float* x, int64_t N) {
#pragma omp parallel for simd schedule(static) if (N > kParallelMin)
  for (int64_t i = 0; i < N; ++i) {
    const float v = x[i], s = sigmoid(v);
    dx[i] = dout[i] * s * (1.0f + v * (1.0f - s));
  }
}

}  // namespace strata::cpu
