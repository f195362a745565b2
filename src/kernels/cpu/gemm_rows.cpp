// The row-invariant linear product (see gemm_rows.h). One micro-kernel shape per (rows, columns)
// pair up to 4 x 4; every instance applies the same sequence of operations to each (row, column)
// accumulator, so how rows and columns are grouped, blocked or threaded never changes a result.
#include "kernels/cpu/gemm_rows.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

#include "core/error.h"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

// GCC 12 warns -Wmaybe-uninitialized / -Wuninitialized inside its own AVX-512 headers (the
// _mm512_undefined_* pass-through of unmasked intrinsics): a false positive, silenced in this file
// (as in quant_gemm.cpp).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace strata::cpu {
namespace {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
using Vec = __m512;
inline Vec vzero() { return _mm512_setzero_ps(); }
inline Vec vload(const float* p) { return _mm512_loadu_ps(p); }
inline Vec vload_tail(const float* p, int n) { return _mm512_maskz_loadu_ps(__mmask16((1u << n) - 1u), p); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline float vsum(Vec v) {  // a fixed tree: halves added pairwise down to one lane (AVX-512F only)
  const __m512d d = _mm512_castps_pd(v);
  __m256 h = _mm256_add_ps(_mm256_castpd_ps(_mm512_extractf64x4_pd(d, 0)),
                           _mm256_castpd_ps(_mm512_extractf64x4_pd(d, 1)));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}
constexpr const char* kIsa = "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int kLanes = 8;
using Vec = __m256;
inline Vec vzero() { return _mm256_setzero_ps(); }
inline Vec vload(const float* p) { return _mm256_loadu_ps(p); }
inline Vec vload_tail(const float* p, int n) {
  alignas(32) static const int32_t ones[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_maskload_ps(p, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ones + 8 - n)));
}
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline float vsum(Vec v) {
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}
constexpr const char* kIsa = "avx2";
#else
constexpr int kLanes = 8;
struct Vec {
  float x[8];
};
inline Vec vzero() { return Vec{}; }
inline Vec vload(const float* p) {
  Vec v;
  for (int i = 0; i < 8; ++i) v.x[i] = p[i];
  return v;
}
inline Vec vload_tail(const float* p, int n) {
  Vec v{};
  for (int i = 0; i < n; ++i) v.x[i] = p[i];
  return v;
}
inline Vec vfma(Vec a, Vec b, Vec c) {
  for (int i = 0; i < 8; ++i) c.x[i] = std::fma(a.x[i], b.x[i], c.x[i]);
  return c;
}
inline float vsum(Vec v) {
  float h[4], q[2];
  for (int i = 0; i < 4; ++i) h[i] = v.x[i] + v.x[i + 4];
  for (int i = 0; i < 2; ++i) q[i] = h[i] + h[i + 2];
  return q[0] + q[1];
}
constexpr const char* kIsa = "portable";
#endif

constexpr int kMaxR = 4, kMaxC = 4;

// out[r, c] for R rows of A and C rows of W (columns of out), over all of K.
template <int R, int C>
void micro(float* out, int64_t ldo, const float* A, int64_t lda, const float* W, int64_t ldw, int64_t K,
           const float* bias) {
  Vec acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = vzero();
  int64_t k = 0;
  for (; k + kLanes <= K; k += kLanes) {
    Vec w[C];
    for (int c = 0; c < C; ++c) w[c] = vload(W + c * ldw + k);
    for (int r = 0; r < R; ++r) {
      const Vec a = vload(A + r * lda + k);
      for (int c = 0; c < C; ++c) acc[r][c] = vfma(a, w[c], acc[r][c]);
    }
  }
  if (k < K) {
    const int n = int(K - k);
    Vec w[C];
    for (int c = 0; c < C; ++c) w[c] = vload_tail(W + c * ldw + k, n);
    for (int r = 0; r < R; ++r) {
      const Vec a = vload_tail(A + r * lda + k, n);
      for (int c = 0; c < C; ++c) acc[r][c] = vfma(a, w[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      const float s = vsum(acc[r][c]);
      out[r * ldo + c] = bias ? s + bias[c] : s;
    }
}

using Micro = void (*)(float*, int64_t, const float*, int64_t, const float*, int64_t, int64_t, const float*);

template <int R, int... Cs>
constexpr auto row_of(std::integer_sequence<int, Cs...>) {
  return std::array<Micro, kMaxC>{&micro<R, Cs + 1>...};
}
template <int... Rs>
constexpr auto table(std::integer_sequence<int, Rs...>) {
  return std::array<std::array<Micro, kMaxC>, kMaxR>{row_of<Rs + 1>(std::make_integer_sequence<int, kMaxC>{})...};
}
constexpr auto kMicro = table(std::make_integer_sequence<int, kMaxR>{});

}  // namespace

void linear_rows_invariant(float* out, int64_t ldo, const float* A, int64_t lda, const float* W, int64_t ldw,
                           const float* bias, int64_t M, int64_t K, int64_t N) {
  STRATA_CHECK(M >= 0 && K >= 0 && N >= 0 && lda >= K && ldw >= K && ldo >= N,
               "linear_rows_invariant: bad shape M={} K={} N={} lda={} ldw={} ldo={}", M, K, N, lda, ldw, ldo);
  if (M == 0 || N == 0) return;
  // Columns in blocks: a block of W (NB rows of K floats) stays in cache while every row of A passes
  // over it, so W is read from memory once per call. Blocks are the unit of work of the threads.
  const int64_t NB = 64;
  const int64_t blocks = (N + NB - 1) / NB;
#pragma omp parallel for schedule(static) if (blocks > 1 && M * N * K > 32768)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t n_end = std::min(N, (b + 1) * NB);
    for (int64_t m = 0; m < M; m += kMaxR) {
      const int R = int(std::min<int64_t>(kMaxR, M - m));
      for (int64_t n = b * NB; n < n_end; n += kMaxC) {
        const int C = int(std::min<int64_t>(kMaxC, n_end - n));
        kMicro[size_t(R - 1)][size_t(C - 1)](out + m * ldo + n, ldo, A + m * lda, lda, W + n * ldw, ldw, K,
                                             bias ? bias + n : nullptr);
      }
    }
  }
}

const char* rows_invariant_isa() { return kIsa; }

}  // namespace strata::cpu

#pragma GCC diagnostic pop
