#pragma once
// What the two quantised GEMV files share (quant_gemm.cpp: fp32 activations; quant_gemm_act8.cpp:
// int8 activations): the split of the weight rows over threads, the CPUID tests of their vector
// paths, and the fixed horizontal sums those paths end with. The int8-activation result is defined
// by the 8-lane tree below (quant_gemm.h), so both files must sum with this one. Internal to them.
#include <algorithm>
#include <cstdint>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define STRATA_QUANT_X86 1
#endif

namespace strata::cpu::quant_gemv {

// run(n0, n1) over the weight rows [0, N) in tasks of 16 rows, split over the threads when
// `threaded`. Each output element is then computed by one thread in one order, so a result does not
// depend on the thread count. (Callers leave small products unthreaded: a fork/join costs more.)
template <class F>
void over_weight_rows(int64_t N, bool threaded, F&& run) {
  constexpr int64_t kRowsPerTask = 16;
  const int64_t tasks = (N + kRowsPerTask - 1) / kRowsPerTask;
#pragma omp parallel for schedule(static) if (threaded)
  for (int64_t t = 0; t < tasks; ++t) run(t * kRowsPerTask, std::min(N, (t + 1) * kRowsPerTask));
}

#ifdef STRATA_QUANT_X86

inline bool cpu_has_avx2_fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
// AVX-512 F + BW + VL (masked byte loads for tails), with AVX2 + FMA.
inline bool cpu_has_avx512_bw_vl() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && cpu_has_avx2_fma();
}

namespace isa_avx2 {
// The 8-lane tree: ((x0 + x4) + (x2 + x6)) + ((x1 + x5) + (x3 + x7)).
__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
}  // namespace isa_avx2

// (Named isa_avx512 so that tests/test_portable_isa.cpp admits its AVX-512 code in the portable build.)
namespace isa_avx512 {
// Lanes i and i + 8 added first, then isa_avx2::hsum's tree (extractf64x4: AVX-512F alone; GCC 12's
// _mm512_reduce_add_ps warns inside its own header).
__attribute__((target("avx512f,avx2,fma"))) inline float hsum(__m512 v) {
  const __m256 h =
      _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  return isa_avx2::hsum(h);
}
}  // namespace isa_avx512

#endif  // STRATA_QUANT_X86

}  // namespace strata::cpu::quant_gemv
