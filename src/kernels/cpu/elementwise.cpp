// Residual adds, scaling and copies over flat arrays (see elementwise.h). Memory-bound single
// passes; threads only for large N.
#include "kernels/cpu/elementwise.h"

#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/cpu/isa.h"

namespace strata::cpu {
namespace {
constexpr int64_t kParallelMin = int64_t(1) << 16;
}

STRATA_CPU_CLONES
void add_inplace(float* __restrict y, const float* __restrict x, int64_t N) {
#pragma omp parallel for simd schedule(static) if (N > kParallelMin)
  for (int64_t i = 0; i < N; ++i) y[i] += x[i];
}

STRATA_CPU_CLONES
void scale_inplace(float* x, float s, int64_t N) {
#pragma omp parallel for simd schedule(static) if (N > kParallelMin)
  for (int64_t i = 0; i < N; ++i) x[i] *= s;
}

STRATA_CPU_CLONES
void mul_add_inplace(float* __restrict y, const float* __restrict a, const float* __restrict b, int64_t N) {
#pragma omp parallel for simd schedule(static) if (N > kParallelMin)
  for (int64_t i = 0; i < N; ++i) y[i] += a[i] * b[i];
}

STRATA_CPU_CLONES
void neg_exp(float* out, const float* x, int64_t N) {
  for (int64_t i = 0; i < N; ++i) out[i] = -std::exp(x[i]);
}

void copy_f32(float* dst, const float* src, int64_t N) {
  if (N > 0) std::memcpy(dst, src, sizeof(float) * size_t(N));
}

void copy_strided(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows, int64_t cols) {
  if (cols <= 0) return;
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) std::memcpy(dst + r * dst_ld, src + r * src_ld, sizeof(float) * size_t(cols));
}

void copy_strided_pairs(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows, int64_t cols,
                        bool split_pairs) {
  STRATA_CHECK(cols % 2 == 0, "copy_strided_pairs: cols = {} must be even (pairs)", cols);
  const int64_t half = cols / 2;
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    float* d = dst + r * dst_ld;
    const float* s = src + r * src_ld;
    if (split_pairs)
      for (int64_t c = 0; c < half; ++c) d[c] = s[2 * c], d[half + c] = s[2 * c + 1];
    else
      for (int64_t c = 0; c < half; ++c) d[2 * c] = s[c], d[2 * c + 1] = s[half + c];
  }
}

STRATA_CPU_CLONES
void add_strided(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[r * dst_ld + c] += src[r * src_ld + c];
}

void cast_f32_to_bf16(uint16_t* __restrict out, const float* __restrict in, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(in[i]);
}

}  // namespace strata::cpu
