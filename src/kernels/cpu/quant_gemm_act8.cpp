// Quantised linear layers with int8 activations (see quant_gemm.h, "int8 activations").
//
// The result is defined by the portable path (gemv_portable): 16 fp32 lanes, lane 8 (b % 2) + l
// taking block b's integer dot over its bytes 4l..4l+3, one fma per block in block order, then a
// fixed tree. The vector paths compute the same integers (exact) and the same fmas in the same
// order, so all paths agree bit for bit (QuantGemmAct8.EveryIsaPathGivesTheSameBits):
// - AVX-512 VNNI: a zmm covers the two blocks of a pair, 16 int32 lanes in the lane order above.
//   vpdpbusd multiplies unsigned by signed bytes, so the weight codes go in as unsigned (int8 + 128,
//   int4's stored nibble = code + 8) and the offset's share, off * (sum of the 4 activation codes),
//   is subtracted by starting the accumulation from its negation (precomputed once per row).
// - AVX2: one block per ymm, vpmaddubsw(|w|, x * sign(w)) then vpmaddwd with ones: the same lanes
//   (|products| <= 127 * 127, so the 16-bit pair sums cannot saturate); even and odd blocks go to
//   two accumulators, which are the low and high halves of the 16 lanes.
// The ISA paths are target-attributed functions in namespaces isa_avx2 / isa_avx512 (see
// quant_gemm.cpp), reached only through the table that act8_isa() picks from CPUID.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/quant_gemm.h"
#include "kernels/cpu/quant_gemv_common.h"

namespace strata::cpu {
namespace {

constexpr int kRowsPerPass = 4;  // rows of x that share one read of the weights
constexpr int64_t kPair = 2 * kActBlock;
// Bytes of int8 weights requested ahead of the loads (half for int4): 1.5x on a K = 1024 product
// streaming from DRAM, where the hardware prefetcher alone left the loads waiting.
constexpr int64_t kPrefetchAhead = 1024;

// The quantised rows of inp, padded to whole pairs of blocks (zeros: they add nothing).
struct Act8Rows {
  int64_t blocks = 0, pairs = 0;  // blocks = ceil(K / 32) (those that hold columns)
  std::vector<int8_t> q;       // [M, pairs * 64]
  std::vector<float> scales;   // [M, pairs * 16]: lanes 0-7 the even block's scale, 8-15 the odd one's
  std::vector<int32_t> neg_offset;  // [M, pairs * 16]: -off * (sum of the lane's 4 codes); VNNI only
  const int8_t* q_row(int64_t m) const { return q.data() + m * pairs * kPair; }
  const float* s_row(int64_t m) const { return scales.data() + m * pairs * 16; }
  const int32_t* c_row(int64_t m) const { return neg_offset.data() + m * pairs * 16; }
};

using GemvFn = void (*)(float* out, int64_t ldo, const Act8Rows& x, int64_t m0, int MB, const QuantWeight& w,
                        const float* bias, int64_t n0, int64_t n1);

// The weight's integer code at (n, k) (kernels/quant_weight.h).
inline int weight_code(const QuantWeight& w, int64_t n, int64_t k) {
  if (w.bits == 8) return reinterpret_cast<const int8_t*>(w.q)[n * w.K + k];
  const int64_t kk = k % kActBlock;
  const uint8_t b = w.q[n * (w.K / 2) + (k / kActBlock) * 16 + (kk & 15)];
  return int(kk < 16 ? (b & 15) : (b >> 4)) - 8;
}

// out = tree16(acc), then the int8 row scale (as an fma into the bias) or the int4 bias.
inline float finish(float r, const QuantWeight& w, const float* bias, int64_t n) {
  const float b = bias ? bias[n] : 0.0f;
  return w.bits == 8 ? std::fma(r, w.scales[n], b) : r + b;
}

// ---- portable: the definition ----------------------------------------------------------------------

void gemv_portable(float* out, int64_t ldo, const Act8Rows& x, int64_t m0, int MB, const QuantWeight& w,
                   const float* bias, int64_t n0, int64_t n1) {
  const int64_t K = w.K, G = K / kActBlock;
  for (int64_t n = n0; n < n1; ++n)
    for (int mi = 0; mi < MB; ++mi) {
      const int8_t* xq = x.q_row(m0 + mi);
      const float* sx = x.s_row(m0 + mi);
      float acc[16] = {};
      for (int64_t b = 0; b < x.blocks; ++b) {
        const int h = int(b & 1);
        const float s = sx[(b / 2) * 16 + 8 * h] * (w.bits == 4 ? w.scales[n * G + b] : 1.0f);
        for (int l = 0; l < 8; ++l) {
          int d = 0;
          for (int j = 0; j < 4; ++j) {
            const int64_t k = b * kActBlock + 4 * l + j;
            if (k < K) d += int(xq[k]) * weight_code(w, n, k);
          }
          acc[8 * h + l] = std::fma(float(d), s, acc[8 * h + l]);
        }
      }
      float t[8];
      for (int i = 0; i < 8; ++i) t[i] = acc[i] + acc[i + 8];
      const float r = ((t[0] + t[4]) + (t[2] + t[6])) + ((t[1] + t[5]) + (t[3] + t[7]));
      out[mi * ldo + n] = finish(r, w, bias, n);
    }
}

#ifdef STRATA_QUANT_X86

// ---- AVX2 ----------------------------------------------------------------------------------------
namespace isa_avx2 {
#define STRATA_AVX2 __attribute__((target("avx2,fma")))

using quant_gemv::isa_avx2::hsum;  // the definition's 8-lane tree

// Block b of weight row n as 32 signed codes in k order.
STRATA_AVX2 inline __m256i weight_block(const QuantWeight& w, int64_t n, int64_t b) {
  const int64_t K = w.K;
  if (w.bits == 4) {
    const uint8_t* src = w.q + n * (K / 2) + b * 16;
    _mm_prefetch(reinterpret_cast<const char*>(src) + kPrefetchAhead / 2, _MM_HINT_T0);
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
    const __m128i low4 = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
    const __m128i lo = _mm_sub_epi8(_mm_and_si128(v, low4), eight);
    const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), low4), eight);
    return _mm256_set_m128i(hi, lo);
  }
  const int8_t* p = reinterpret_cast<const int8_t*>(w.q) + n * K + b * kActBlock;
  _mm_prefetch(reinterpret_cast<const char*>(p) + kPrefetchAhead, _MM_HINT_T0);
  const int64_t left = K - b * kActBlock;
  if (left >= kActBlock) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  alignas(32) int8_t tail[kActBlock] = {};  // the row's last partial block: never read past it
  std::memcpy(tail, p, size_t(left));
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(tail));
}

template <int MB>
STRATA_AVX2 void gemv(float* out, int64_t ldo, const Act8Rows& x, int64_t m0, const QuantWeight& w,
                      const float* bias, int64_t n0, int64_t n1) {
  const int64_t G = w.K / kActBlock;
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t n = n0; n < n1; ++n) {
    __m256 acc[MB][2];
    for (int m = 0; m < MB; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
    for (int64_t b = 0; b < x.blocks; ++b) {
      const int h = int(b & 1);
      const __m256i wv = weight_block(w, n, b), wabs = _mm256_abs_epi8(wv);
      const __m256 sw = _mm256_set1_ps(w.bits == 4 ? w.scales[n * G + b] : 1.0f);
      for (int m = 0; m < MB; ++m) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q_row(m0 + m) + b * kActBlock));
        const __m256i d = _mm256_madd_epi16(_mm256_maddubs_epi16(wabs, _mm256_sign_epi8(xv, wv)), ones);
        const __m256 s = _mm256_mul_ps(_mm256_loadu_ps(x.s_row(m0 + m) + (b / 2) * 16 + 8 * h), sw);
        acc[m][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), s, acc[m][h]);
      }
    }
    for (int m = 0; m < MB; ++m) out[m * ldo + n] = finish(hsum(_mm256_add_ps(acc[m][0], acc[m][1])), w, bias, n);
  }
}

void gemv_any(float* out, int64_t ldo, const Act8Rows& x, int64_t m0, int MB, const QuantWeight& w, const float* bias,
              int64_t n0, int64_t n1) {
  switch (MB) {
    case 1: return gemv<1>(out, ldo, x, m0, w, bias, n0, n1);
    case 2: return gemv<2>(out, ldo, x, m0, w, bias, n0, n1);
    case 3: return gemv<3>(out, ldo, x, m0, w, bias, n0, n1);
    default: return gemv<4>(out, ldo, x, m0, w, bias, n0, n1);
  }
}
#undef STRATA_AVX2
}  // namespace isa_avx2

// ---- AVX-512 VNNI ------------------------------------------------------------------------------------
// GCC 12 warns -Wmaybe-uninitialized / -Wuninitialized inside its own AVX-512 headers (the
// _mm512_undefined_* pass-through of unmasked intrinsics): a false positive (quant_gemm.cpp).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
namespace isa_avx512 {
#define STRATA_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")))

using quant_gemv::isa_avx512::hsum;  // lanes i + 8 first, then the 8-lane tree

// Pair p of weight row n as 64 unsigned bytes in k order (int8 + 128, or int4's stored nibble), and
// the number of its blocks that hold columns (1 or 2).
STRATA_VNNI inline __m512i weight_pair(const QuantWeight& w, int64_t n, int64_t p, int64_t blocks, int& nb) {
  const int64_t K = w.K;
  nb = int(std::min<int64_t>(2, blocks - 2 * p));
  if (w.bits == 4) {
    const uint8_t* src = w.q + n * (K / 2) + p * 32;
    _mm_prefetch(reinterpret_cast<const char*>(src) + kPrefetchAhead / 2, _MM_HINT_T0);
    const __m256i low4 = _mm256_set1_epi8(15);
    const __m256i v = nb == 2 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src))
                              : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
    const __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
    // 128-bit chunks [lo0, lo1, hi0, hi1] -> [lo0, hi0, lo1, hi1]: block 2p's 32 codes, then 2p+1's.
    const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    return _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
  }
  const int8_t* src = reinterpret_cast<const int8_t*>(w.q) + n * K + p * kPair;
  _mm_prefetch(reinterpret_cast<const char*>(src) + kPrefetchAhead, _MM_HINT_T0);
  const int64_t left = K - p * kPair;
  const __m512i v = left >= kPair ? _mm512_loadu_si512(src)
                                  : _mm512_maskz_loadu_epi8((__mmask64(1) << left) - 1, src);  // never past the row
  return _mm512_xor_si512(v, _mm512_set1_epi8(char(0x80)));
}

// NB weight rows n0.. against MB rows of x: NB * MB accumulators; each weight pair is loaded once
// for the MB rows, and each row's codes, offsets and scales once for the NB weight rows.
template <int MB, int NB, int BITS>
STRATA_VNNI void tile(float* out, int64_t ldo, const Act8Rows& x, int64_t m0, const QuantWeight& w,
                      const float* bias, int64_t n0) {
  const int64_t G = w.K / kActBlock;
  __m512 acc[MB][NB];
  for (int m = 0; m < MB; ++m)
    for (int j = 0; j < NB; ++j) acc[m][j] = _mm512_setzero_ps();
  for (int64_t p = 0; p < x.pairs; ++p) {
    int nb = 2;
    __m512i wu[NB];
    __m512 sw[NB];
    for (int j = 0; j < NB; ++j) {
      wu[j] = weight_pair(w, n0 + j, p, x.blocks, nb);
      if constexpr (BITS == 4) {  // [s(2p) x 8, s(2p + 1) x 8]; the second 0 when the pair has one block
        const float* sc = w.scales + (n0 + j) * G + 2 * p;
        // (insertf64x4 on the bits: AVX-512F; insertf32x8 would need DQ.)
        sw[j] = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(_mm256_set1_ps(sc[0]))),
                                                    _mm256_castps_pd(_mm256_set1_ps(nb == 2 ? sc[1] : 0.0f)), 1));
      }
    }
    const __mmask16 lanes = nb == 2 ? __mmask16(0xFFFF) : __mmask16(0x00FF);
    for (int m = 0; m < MB; ++m) {
      const __m512i c = _mm512_loadu_si512(x.c_row(m0 + m) + p * 16);
      const __m512i xv = _mm512_loadu_si512(x.q_row(m0 + m) + p * kPair);
      const __m512 sx = _mm512_loadu_ps(x.s_row(m0 + m) + p * 16);
      for (int j = 0; j < NB; ++j) {
        const __m512 f = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(c, wu[j], xv));
        const __m512 s = BITS == 4 ? _mm512_mul_ps(sx, sw[j]) : sx;  // int8: s_x * 1, as the definition
        acc[m][j] = _mm512_mask3_fmadd_ps(f, s, acc[m][j], lanes);
      }
    }
  }
  for (int m = 0; m < MB; ++m)
    for (int j = 0; j < NB; ++j) out[m * ldo + n0 + j] = finish(hsum(acc[m][j]), w, bias, n0 + j);
}

template <int MB, int BITS>
STRATA_VNNI void gemv(float* out, int64_t ldo, const Act8Rows& x, int64_t m0, const QuantWeight& w,
                      const float* bias, int64_t n0, int64_t n1) {
  int64_t n = n0;
  // One input row: one weight row at a time, read straight through. Four rows interleaved, as the
  // tile reads them, ran 1.5x slower on a model whose weights stream from DRAM with K = 1024: four
  // streams inside one 4 KiB page, which the hardware prefetcher seems not to follow.
  if constexpr (MB > 1)
    for (; n + 4 <= n1; n += 4) tile<MB, 4, BITS>(out, ldo, x, m0, w, bias, n);
  for (; n < n1; ++n) tile<MB, 1, BITS>(out, ldo, x, m0, w, bias, n);
}

template <int BITS>
void gemv_bits(float* out, int64_t ldo, const Act8Rows& x, int64_t m0, int MB, const QuantWeight& w, const float* bias,
               int64_t n0, int64_t n1) {
  switch (MB) {
    case 1: return gemv<1, BITS>(out, ldo, x, m0, w, bias, n0, n1);
    case 2: return gemv<2, BITS>(out, ldo, x, m0, w, bias, n0, n1);
    case 3: return gemv<3, BITS>(out, ldo, x, m0, w, bias, n0, n1);
    default: return gemv<4, BITS>(out, ldo, x, m0, w, bias, n0, n1);
  }
}

void gemv_any(float* out, int64_t ldo, const Act8Rows& x, int64_t m0, int MB, const QuantWeight& w, const float* bias,
              int64_t n0, int64_t n1) {
  return w.bits == 8 ? gemv_bits<8>(out, ldo, x, m0, MB, w, bias, n0, n1)
                     : gemv_bits<4>(out, ldo, x, m0, MB, w, bias, n0, n1);
}
#undef STRATA_VNNI
}  // namespace isa_avx512
#pragma GCC diagnostic pop

#endif  // STRATA_QUANT_X86

bool cpu_has(Act8Isa isa) {
  switch (isa) {
    case Act8Isa::portable: return true;
#ifdef STRATA_QUANT_X86
    case Act8Isa::avx2: return quant_gemv::cpu_has_avx2_fma();
    case Act8Isa::avx512_vnni: return quant_gemv::cpu_has_avx512_bw_vl() && __builtin_cpu_supports("avx512vnni");
#endif
    default: return false;
  }
}

std::atomic<Act8Isa>& chosen_isa() {
  static std::atomic<Act8Isa> isa{[] {
    for (Act8Isa i : {Act8Isa::avx512_vnni, Act8Isa::avx2})
      if (cpu_has(i)) return i;
    return Act8Isa::portable;
  }()};
  return isa;
}

GemvFn gemv_of(Act8Isa isa) {
  switch (isa) {
#ifdef STRATA_QUANT_X86
    case Act8Isa::avx512_vnni: return isa_avx512::gemv_any;
    case Act8Isa::avx2: return isa_avx2::gemv_any;
#endif
    default: return gemv_portable;
  }
}

// inp[M, K] -> rows (scratch reused across calls by this thread).
void quantize_rows(const float* inp, int64_t M, int64_t K, int bits, bool offsets, Act8Rows& rows) {
  rows.blocks = (K + kActBlock - 1) / kActBlock;
  rows.pairs = (rows.blocks + 1) / 2;
  const int64_t row_bytes = rows.pairs * kPair, row_lanes = rows.pairs * 16;
  rows.q.assign(size_t(M * row_bytes), 0);
  rows.scales.assign(size_t(M * row_lanes), 0.0f);
  rows.neg_offset.assign(offsets ? size_t(M * row_lanes) : 0, 0);
  const int off = bits == 8 ? 128 : 8;  // what weight_pair added to the codes
  std::vector<float> block_scales(size_t(rows.blocks));
#pragma omp parallel for if (M * K > (1 << 16)) firstprivate(block_scales)
  for (int64_t m = 0; m < M; ++m) {
    int8_t* q = rows.q.data() + m * row_bytes;
    quantize_activations(inp + m * K, K, q, block_scales.data());
    float* s = rows.scales.data() + m * row_lanes;
    for (int64_t b = 0; b < rows.blocks; ++b) std::fill_n(s + (b / 2) * 16 + 8 * (b & 1), 8, block_scales[size_t(b)]);
    if (!offsets) continue;
    int32_t* c = rows.neg_offset.data() + m * row_lanes;
    for (int64_t i = 0; i < row_lanes; ++i)  // lane i of pair p: bytes 4i..4i+3 of the pair
      c[i] = -off * (int32_t(q[4 * i]) + q[4 * i + 1] + q[4 * i + 2] + q[4 * i + 3]);
  }
}

}  // namespace

void quantize_activations(const float* x, int64_t K, int8_t* q, float* scales) {
  const int64_t blocks = (K + kActBlock - 1) / kActBlock;
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t k0 = b * kActBlock, k1 = std::min(K, k0 + kActBlock);
    float amax = 0.0f;
    for (int64_t k = k0; k < k1; ++k) amax = std::max(amax, std::fabs(x[k]));
    const float s = amax / 127.0f;
    const float inv = s > 0.0f ? 1.0f / s : 0.0f;
    scales[b] = s;
    for (int64_t k = k0; k < k0 + kActBlock; ++k)
      q[k] = k < k1 ? int8_t(std::clamp(std::nearbyint(x[k] * inv), -127.0f, 127.0f)) : int8_t(0);
  }
}

void quant_linear_forward_act8(float* out, const float* inp, const QuantWeight& w, const float* bias, int64_t M) {
  check_quant_weight(w, "quant_linear_forward_act8");
  const int64_t N = w.N, K = w.K;
  if (M <= 0 || N == 0) return;
  const Act8Isa isa = chosen_isa().load(std::memory_order_relaxed);
  // Bound by reference outside the parallel region: a thread_local named inside it would be each
  // worker's own (empty) instance.
  static thread_local Act8Rows scratch;
  Act8Rows& rows = scratch;
  quantize_rows(inp, M, K, w.bits, isa == Act8Isa::avx512_vnni, rows);
  const GemvFn fn = gemv_of(isa);
  quant_gemv::over_weight_rows(N, N * K * std::min<int64_t>(M, 4) >= (1 << 18), [&](int64_t n0, int64_t n1) {
    for (int64_t m0 = 0; m0 < M; m0 += kRowsPerPass)
      fn(out + m0 * N, N, rows, m0, int(std::min<int64_t>(kRowsPerPass, M - m0)), w, bias, n0, n1);
  });
}

Act8Isa act8_isa() { return chosen_isa().load(); }
bool act8_isa_supported(Act8Isa isa) { return cpu_has(isa); }
void set_act8_isa(Act8Isa isa) {
  STRATA_CHECK(cpu_has(isa), "set_act8_isa: this CPU lacks {}", act8_isa_name(isa));
  chosen_isa().store(isa);
}
const char* act8_isa_name(Act8Isa isa) {
  switch (isa) {
    case Act8Isa::avx512_vnni: return "avx512_vnni";
    case Act8Isa::avx2: return "avx2";
    default: return "portable";
  }
}

}  // namespace strata::cpu
