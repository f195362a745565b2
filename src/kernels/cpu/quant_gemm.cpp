// Weight-only int8 / int4 linear layers (see quant_gemm.h and kernels/quant_weight.h).
//
// ISA dispatch: the vector paths are functions with a GCC target attribute, in namespaces named
// isa_avx2 / isa_avx512 (tests/test_portable_isa.cpp lets the portable build's scan through
// functions named isa_avx512, as it does the STRATA_CPU_CLONES copies). They are reached only through
// the table that quant_isa() picks from CPUID, so a CPU without the ISA never runs them.
#include "kernels/cpu/quant_gemm.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/quant_gemv_common.h"

namespace strata::cpu {

namespace {

constexpr int64_t kGemvMaxRows = 8;  // M below this: the GEMV path; at or above: dequantised tiles + gemm
constexpr int kRowsPerPass = 4;      // rows of x that share one read of the weights in the GEMV

// out[m * ldo + n] for m < MB, n in [n0, n1): one ISA's GEMV over a range of weight rows.
using GemvFn = void (*)(float* out, int64_t ldo, const float* x, int64_t ldx, int MB, const QuantWeight& w,
                        const float* bias, int64_t n0, int64_t n1);

// ---- portable ----------------------------------------------------------------------------------

void gemv_portable(float* out, int64_t ldo, const float* x, int64_t ldx, int MB, const QuantWeight& w,
                   const float* bias, int64_t n0, int64_t n1) {
  const int64_t K = w.K;
  for (int64_t n = n0; n < n1; ++n)
    for (int m = 0; m < MB; ++m) {
      const float* xm = x + m * ldx;
      float acc = 0.0f;
      if (w.bits == 8) {
        const auto* q = reinterpret_cast<const int8_t*>(w.q) + n * K;
        for (int64_t k = 0; k < K; ++k) acc += xm[k] * float(q[k]);
        acc *= w.scales[n];
      } else {
        const int64_t G = K / kQuantGroup;
        for (int64_t g = 0; g < G; ++g) {
          const uint8_t* b = w.q + n * (K / 2) + g * 16;
          const float* xg = xm + g * kQuantGroup;
          float t = 0.0f;
          for (int j = 0; j < 16; ++j)
            t += xg[j] * float(int(b[j] & 15) - 8) + xg[16 + j] * float(int(b[j] >> 4) - 8);
          acc += t * w.scales[n * G + g];
        }
      }
      out[m * ldo + n] = acc + (bias ? bias[n] : 0.0f);
    }
}

#ifdef STRATA_QUANT_X86

// ---- AVX2 + FMA --------------------------------------------------------------------------------
namespace isa_avx2 {
#define STRATA_AVX2 __attribute__((target("avx2,fma")))

using quant_gemv::isa_avx2::hsum;

// 8 int8 at p -> 8 floats
STRATA_AVX2 inline __m256 load_i8x8(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

template <int MB>
STRATA_AVX2 void gemv_i8(float* out, int64_t ldo, const float* x, int64_t ldx, const QuantWeight& w, const float* bias,
                         int64_t n0, int64_t n1) {
  const int64_t K = w.K;
  for (int64_t n = n0; n < n1; ++n) {
    const auto* q = reinterpret_cast<const int8_t*>(w.q) + n * K;
    __m256 acc[MB][2];
    for (int m = 0; m < MB; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
      const __m256 w0 = load_i8x8(q + k), w1 = load_i8x8(q + k + 8);
      for (int m = 0; m < MB; ++m) {
        acc[m][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + m * ldx + k), acc[m][0]);
        acc[m][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + m * ldx + k + 8), acc[m][1]);
      }
    }
    for (int m = 0; m < MB; ++m) {
      float s = hsum(_mm256_add_ps(acc[m][0], acc[m][1]));
      for (int64_t kk = k; kk < K; ++kk) s += x[m * ldx + kk] * float(q[kk]);
      out[m * ldo + n] = s * w.scales[n] + (bias ? bias[n] : 0.0f);
    }
  }
}

template <int MB>
STRATA_AVX2 void gemv_i4(float* out, int64_t ldo, const float* x, int64_t ldx, const QuantWeight& w, const float* bias,
                         int64_t n0, int64_t n1) {
  const int64_t K = w.K, G = K / kQuantGroup;
  const __m128i low4 = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
  for (int64_t n = n0; n < n1; ++n) {
    __m256 acc[MB][2];
    for (int m = 0; m < MB; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
    for (int64_t g = 0; g < G; ++g) {
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w.q + n * (K / 2) + g * 16));
      const __m128i lo = _mm_sub_epi8(_mm_and_si128(b, low4), eight);                     // k = 0..15
      const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(b, 4), low4), eight);  // k = 16..31
      const __m256 s = _mm256_set1_ps(w.scales[n * G + g]);
      const __m256 w0 = _mm256_mul_ps(s, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)));
      const __m256 w1 = _mm256_mul_ps(s, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))));
      const __m256 w2 = _mm256_mul_ps(s, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)));
      const __m256 w3 = _mm256_mul_ps(s, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))));
      for (int m = 0; m < MB; ++m) {
        const float* xg = x + m * ldx + g * kQuantGroup;
        acc[m][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xg), acc[m][0]);
        acc[m][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xg + 8), acc[m][1]);
        acc[m][0] = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xg + 16), acc[m][0]);
        acc[m][1] = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xg + 24), acc[m][1]);
      }
    }
    for (int m = 0; m < MB; ++m) out[m * ldo + n] = hsum(_mm256_add_ps(acc[m][0], acc[m][1])) + (bias ? bias[n] : 0.0f);
  }
}

void gemv(float* out, int64_t ldo, const float* x, int64_t ldx, int MB, const QuantWeight& w, const float* bias,
          int64_t n0, int64_t n1) {
  const bool i8 = w.bits == 8;
  switch (MB) {
    case 1: return i8 ? gemv_i8<1>(out, ldo, x, ldx, w, bias, n0, n1) : gemv_i4<1>(out, ldo, x, ldx, w, bias, n0, n1);
    case 2: return i8 ? gemv_i8<2>(out, ldo, x, ldx, w, bias, n0, n1) : gemv_i4<2>(out, ldo, x, ldx, w, bias, n0, n1);
    case 3: return i8 ? gemv_i8<3>(out, ldo, x, ldx, w, bias, n0, n1) : gemv_i4<3>(out, ldo, x, ldx, w, bias, n0, n1);
    default: return i8 ? gemv_i8<4>(out, ldo, x, ldx, w, bias, n0, n1) : gemv_i4<4>(out, ldo, x, ldx, w, bias, n0, n1);
  }
}
#undef STRATA_AVX2
}  // namespace isa_avx2

// ---- AVX-512 (F + BW + VL: byte loads with masks for the int8 tail) -----------------------------
// GCC 12 warns -Wmaybe-uninitialized inside its own AVX-512 headers (_mm512_undefined_* as the
// pass-through of unmasked conversions): a false positive, silenced for this section only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
namespace isa_avx512 {
#define STRATA_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))

using quant_gemv::isa_avx512::hsum;

// 16 int8 at p (only the first `mask` lanes read) -> 16 floats
STRATA_AVX512 inline __m512 load_i8x16(const int8_t* p, __mmask16 mask) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, p)));
}

template <int MB>
STRATA_AVX512 void gemv_i8(float* out, int64_t ldo, const float* x, int64_t ldx, const QuantWeight& w,
                           const float* bias, int64_t n0, int64_t n1) {
  const int64_t K = w.K;
  for (int64_t n = n0; n < n1; ++n) {
    const auto* q = reinterpret_cast<const int8_t*>(w.q) + n * K;
    __m512 acc[MB][2];
    for (int m = 0; m < MB; ++m) acc[m][0] = acc[m][1] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
      const __m512 w0 = load_i8x16(q + k, 0xFFFF), w1 = load_i8x16(q + k + 16, 0xFFFF);
      for (int m = 0; m < MB; ++m) {
        acc[m][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + m * ldx + k), acc[m][0]);
        acc[m][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + m * ldx + k + 16), acc[m][1]);
      }
    }
    for (; k < K; k += 16) {  // the last 1..31 columns, 16 at a time, masked
      const __mmask16 mask = K - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (K - k)) - 1);
      const __m512 w0 = load_i8x16(q + k, mask);
      for (int m = 0; m < MB; ++m)
        acc[m][0] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(mask, x + m * ldx + k), acc[m][0]);
    }
    for (int m = 0; m < MB; ++m)
      out[m * ldo + n] = hsum(_mm512_add_ps(acc[m][0], acc[m][1])) * w.scales[n] + (bias ? bias[n] : 0.0f);
  }
}

template <int MB>
STRATA_AVX512 void gemv_i4(float* out, int64_t ldo, const float* x, int64_t ldx, const QuantWeight& w,
                           const float* bias, int64_t n0, int64_t n1) {
  const int64_t K = w.K, G = K / kQuantGroup;
  const __m512i low4 = _mm512_set1_epi32(15), eight = _mm512_set1_epi32(8);
  for (int64_t n = n0; n < n1; ++n) {
    __m512 acc[MB][2];
    for (int m = 0; m < MB; ++m) acc[m][0] = acc[m][1] = _mm512_setzero_ps();
    for (int64_t g = 0; g < G; ++g) {
      const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.q + n * (K / 2) + g * 16)));
      const __m512 s = _mm512_set1_ps(w.scales[n * G + g]);
      const __m512 w0 = _mm512_mul_ps(s, _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(b, low4), eight)));
      const __m512 w1 = _mm512_mul_ps(s, _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(b, 4), eight)));
      for (int m = 0; m < MB; ++m) {
        const float* xg = x + m * ldx + g * kQuantGroup;
        acc[m][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xg), acc[m][0]);
        acc[m][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xg + 16), acc[m][1]);
      }
    }
    for (int m = 0; m < MB; ++m)
      out[m * ldo + n] = hsum(_mm512_add_ps(acc[m][0], acc[m][1])) + (bias ? bias[n] : 0.0f);
  }
}

void gemv(float* out, int64_t ldo, const float* x, int64_t ldx, int MB, const QuantWeight& w, const float* bias,
          int64_t n0, int64_t n1) {
  const bool i8 = w.bits == 8;
  switch (MB) {
    case 1: return i8 ? gemv_i8<1>(out, ldo, x, ldx, w, bias, n0, n1) : gemv_i4<1>(out, ldo, x, ldx, w, bias, n0, n1);
    case 2: return i8 ? gemv_i8<2>(out, ldo, x, ldx, w, bias, n0, n1) : gemv_i4<2>(out, ldo, x, ldx, w, bias, n0, n1);
    case 3: return i8 ? gemv_i8<3>(out, ldo, x, ldx, w, bias, n0, n1) : gemv_i4<3>(out, ldo, x, ldx, w, bias, n0, n1);
    default: return i8 ? gemv_i8<4>(out, ldo, x, ldx, w, bias, n0, n1) : gemv_i4<4>(out, ldo, x, ldx, w, bias, n0, n1);
  }
}
#undef STRATA_AVX512
}  // namespace isa_avx512
#pragma GCC diagnostic pop

#endif  // STRATA_QUANT_X86

bool cpu_has(QuantIsa isa) {
  switch (isa) {
    case QuantIsa::portable: return true;
#ifdef STRATA_QUANT_X86
    case QuantIsa::avx2: return quant_gemv::cpu_has_avx2_fma();
    case QuantIsa::avx512: return quant_gemv::cpu_has_avx512_bw_vl();
#endif
    default: return false;
  }
}

QuantIsa best_isa() {
  for (QuantIsa i : {QuantIsa::avx512, QuantIsa::avx2})
    if (cpu_has(i)) return i;
  return QuantIsa::portable;
}

std::atomic<QuantIsa>& chosen_isa() {
  static std::atomic<QuantIsa> isa{best_isa()};
  return isa;
}

GemvFn gemv_of(QuantIsa isa) {
  switch (isa) {
#ifdef STRATA_QUANT_X86
    case QuantIsa::avx512: return isa_avx512::gemv;
    case QuantIsa::avx2: return isa_avx2::gemv;
#endif
    default: return gemv_portable;
  }
}

}  // namespace

void check_quant_shape(int bits, int64_t N, int64_t K) {
  if (bits != 8 && bits != 4) throw InputError(fmt::format("quantisation to {} bits: the choices are 8 and 4", bits));
  if (N < 0 || K < 0) throw InputError(fmt::format("quantisation of a [{}, {}] weight: negative size", N, K));
  if (bits == 4 && K % kQuantGroup != 0)
    throw InputError(fmt::format("int4 quantisation of a [{}, {}] weight: its input size K = {} is not a multiple of "
                                 "the group size {} (quantise it to 8 bits instead)",
                                 N, K, K, kQuantGroup));
}

void quantize_weight(int bits, const float* w, int64_t N, int64_t K, uint8_t* q, float* scales) {
  check_quant_shape(bits, N, K);
  // One block = a row (int8) or a group (int4): scale = amax / qmax, q = round(w / scale).
  const int64_t block = bits == 8 ? K : kQuantGroup;
  const float qmax = bits == 8 ? 127.0f : 7.0f;
  const int64_t blocks = block == 0 ? 0 : N * K / block;
  // Checked before the parallel loop: an exception must not leave an OpenMP region.
  for (int64_t i = 0; i < N * K; ++i)
    if (!std::isfinite(w[i]))
      throw InputError(fmt::format("quantisation: weight value {} at row {} column {} is not finite", w[i], i / K, i % K));
#pragma omp parallel for if (N * K > (1 << 16))
  for (int64_t b = 0; b < blocks; ++b) {
    const float* src = w + b * block;
    float amax = 0.0f;
    for (int64_t i = 0; i < block; ++i) amax = std::max(amax, std::fabs(src[i]));
    const float s = amax / qmax;
    const float inv = s > 0.0f ? 1.0f / s : 0.0f;
    scales[b] = s;
    auto code = [&](int64_t i) { return int(std::clamp(std::nearbyint(src[i] * inv), -qmax, qmax)); };
    if (bits == 8) {
      for (int64_t i = 0; i < block; ++i) q[b * block + i] = uint8_t(int8_t(code(i)));
    } else {
      uint8_t* dst = q + b * 16;
      for (int j = 0; j < 16; ++j) dst[j] = uint8_t((code(j) + 8) | ((code(16 + j) + 8) << 4));
    }
  }
}

void dequantize_weight(const QuantWeight& w, float* out) {
  check_quant_weight(w, "dequantize_weight");
  const int64_t N = w.N, K = w.K;
#pragma omp parallel for if (N * K > (1 << 16))
  for (int64_t n = 0; n < N; ++n) {
    float* o = out + n * K;
    if (w.bits == 8) {
      const auto* q = reinterpret_cast<const int8_t*>(w.q) + n * K;
      for (int64_t k = 0; k < K; ++k) o[k] = w.scales[n] * float(q[k]);
    } else {
      const int64_t G = K / kQuantGroup;
      for (int64_t g = 0; g < G; ++g) {
        const uint8_t* b = w.q + n * (K / 2) + g * 16;
        const float s = w.scales[n * G + g];
        for (int j = 0; j < 16; ++j) {
          o[g * kQuantGroup + j] = s * float(int(b[j] & 15) - 8);
          o[g * kQuantGroup + 16 + j] = s * float(int(b[j] >> 4) - 8);
        }
      }
    }
  }
}

void quant_linear_forward(float* out, const float* inp, const QuantWeight& w, const float* bias, int64_t M,
                          bool row_invariant) {
  check_quant_weight(w, "quant_linear_forward");
  const int64_t N = w.N, K = w.K;
  if (M <= 0 || N == 0) return;
  if (M < kGemvMaxRows || row_invariant) {
    const GemvFn fn = gemv_of(chosen_isa().load(std::memory_order_relaxed));
    // Below 256K weights a fork/join costs more than the product (measured on a 128-wide model).
    quant_gemv::over_weight_rows(N, N * K >= (1 << 18), [&](int64_t n0, int64_t n1) {
      for (int64_t m0 = 0; m0 < M; m0 += kRowsPerPass)
        fn(out + m0 * N, N, inp + m0 * K, K, int(std::min<int64_t>(kRowsPerPass, M - m0)), w, bias, n0, n1);
    });
    return;
  }
  // Prefill: W dequantised a tile of rows at a time (about 1 MiB of fp32), each tile one sgemm into
  // its columns of out. The dequantisation is O(N K), the products O(M N K).
  const int64_t tile = std::clamp<int64_t>(K > 0 ? (int64_t(1) << 18) / K : N, 16, std::max<int64_t>(N, 16));
  std::vector<float> buf(size_t(std::min(tile, N) * K));
  for (int64_t n0 = 0; n0 < N; n0 += tile) {
    const int64_t nt = std::min(tile, N - n0);
    QuantWeight part = w;
    part.N = nt;
    part.q = w.q + quant_bytes(w.bits, n0, K);
    part.scales = w.scales + quant_scales(w.bits, n0, K);
    dequantize_weight(part, buf.data());
    gemm(false, true, M, nt, K, 1.0f, inp, K, buf.data(), K, 0.0f, out + n0, N);
  }
  if (bias) {
#pragma omp parallel for if (M * N > 32768)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) out[m * N + n] += bias[n];
  }
}

QuantIsa quant_isa() { return chosen_isa().load(); }
bool quant_isa_supported(QuantIsa isa) { return cpu_has(isa); }
void set_quant_isa(QuantIsa isa) {
  STRATA_CHECK(cpu_has(isa), "set_quant_isa: this CPU lacks {}", quant_isa_name(isa));
  chosen_isa().store(isa);
}
const char* quant_isa_name(QuantIsa isa) {
  switch (isa) {
    case QuantIsa::avx512: return "avx512";
    case QuantIsa::avx2: return "avx2";
    default: return "portable";
  }
}

}  // namespace strata::cpu
