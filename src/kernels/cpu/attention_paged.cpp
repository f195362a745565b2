// Decode attention over a paged kv cache (see attention.h): the CPU reference of the CUDA twin's
// paged flash-decoding. One task per (sequence, kv head) packs the G query heads that read the kv
// head, so every cached key and value is read once per kv head; keys go in tiles of kBK with an
// online softmax, like attention_forward's decode path, in a fixed order (thread-count independent).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/isa.h"

#if defined(__AVX512F__)
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

// s[j] = scale * q . k_j for kn keys (k_j at k + slots[j] * tstride), each dot product computed one
// fixed way: 16 lanes of partial sums (lane i sums the c = i mod 16 terms in order, by fma), then
// the pairwise tree y_i = x_i + x_{i+8}, z_i = y_i + y_{i+4}, w_i = z_i + z_{i+2}, w_0 + w_1. Keys go
// 16 at a time so that the 16 trees are reduced together (a transposing reduction, AVX-512) instead
// of one horizontal reduction per key, which dominated at small head sizes. The portable version
// computes the same sums in the same order, so a query's scores do not depend on how many keys or
// which other queries there are.
void scores_portable(float* s, const float* q, const float* k, const int64_t* slots, int64_t kn, int64_t tstride,
                     int64_t hd, float scale) {
  for (int64_t j = 0; j < kn; ++j) {
    const float* kr = k + slots[j] * tstride;
    float x[16] = {};
    for (int64_t c = 0; c < hd; ++c) x[c % 16] = std::fma(q[c], kr[c], x[c % 16]);
    float y[8], z[4], w[2];
    for (int i = 0; i < 8; ++i) y[i] = x[i] + x[i + 8];
    for (int i = 0; i < 4; ++i) z[i] = y[i] + y[i + 4];
    for (int i = 0; i < 2; ++i) w[i] = z[i] + z[i + 2];
    s[j] = (w[0] + w[1]) * scale;
  }
}

#if defined(__AVX512F__)
// The first min(n, 16) lanes (masked loads and stores of a tail).
inline __mmask16 first_lanes(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u); }

// The 16 trees of a[0..15] at once; lane 4k + j of the result is the sum of a[k + 4j].
inline __m512 reduce16(const __m512* a) {
  __m512 t[8], u[4], r[2];
  for (int i = 0; i < 8; ++i)  // y of a[2i] in lanes 0-7, of a[2i+1] in lanes 8-15
    t[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44),
                         _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xEE));
  for (int i = 0; i < 4; ++i)  // z of a[4i + b] in 128-bit block b
    u[i] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0xDD));
  for (int i = 0; i < 2; ++i)  // block b: w of a[8i + b] (lanes 0-1) and of a[8i + 4 + b] (lanes 2-3)
    r[i] = _mm512_add_ps(_mm512_shuffle_ps(u[2 * i], u[2 * i + 1], 0x44),
                         _mm512_shuffle_ps(u[2 * i], u[2 * i + 1], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_ps(r[0], r[1], 0x88), _mm512_shuffle_ps(r[0], r[1], 0xDD));
}

void scores(float* s, const float* q, const float* k, const int64_t* slots, int64_t kn, int64_t tstride, int64_t hd,
            float scale) {
  // Lane 4k + j of reduce16 holds key k + 4j: this gather puts key i back at position i.
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m512 sc = _mm512_set1_ps(scale);
  for (int64_t j0 = 0; j0 < kn; j0 += 16) {
    const int n = int(std::min<int64_t>(16, kn - j0));
    __m512 acc[16];
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();
    for (int64_t c = 0; c < hd; c += 16) {
      const __mmask16 m = first_lanes(hd - c);
      const __m512 qv = _mm512_maskz_loadu_ps(m, q + c);
      for (int i = 0; i < n; ++i)
        acc[i] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, k + slots[j0 + i] * tstride + c), acc[i]);
    }
    const __m512 out = _mm512_mul_ps(_mm512_permutexvar_ps(order, reduce16(acc)), sc);
    _mm512_mask_storeu_ps(s + j0, first_lanes(n), out);
  }
}
#else
void scores(float* s, const float* q, const float* k, const int64_t* slots, int64_t kn, int64_t tstride, int64_t hd,
            float scale) {
  scores_portable(s, q, k, slots, kn, tstride, hd, scale);
}
#endif

// o[c] += sum over j, in order, of p[j] * v_j[c] (v_j at v + slots[j] * tstride), by fma: each o[c]
// the same sequence of operations on every path. The vector path keeps 16 channels of o in a
// register over all kn keys instead of a load and store of o per key.
void accumulate_pv_portable(float* o, const float* p, const float* v, const int64_t* slots, int64_t kn,
                            int64_t tstride, int64_t hd) {
  for (int64_t j = 0; j < kn; ++j) {
    const float* vr = v + slots[j] * tstride;
    for (int64_t c = 0; c < hd; ++c) o[c] = std::fma(p[j], vr[c], o[c]);
  }
}

#if defined(__AVX512F__)
void accumulate_pv(float* o, const float* p, const float* v, const int64_t* slots, int64_t kn, int64_t tstride,
                   int64_t hd) {
  for (int64_t c = 0; c < hd; c += 16) {
    const __mmask16 m = first_lanes(hd - c);
    __m512 acc = _mm512_maskz_loadu_ps(m, o + c);
    for (int64_t j = 0; j < kn; ++j)
      acc = _mm512_fmadd_ps(_mm512_set1_ps(p[j]), _mm512_maskz_loadu_ps(m, v + slots[j] * tstride + c), acc);
    _mm512_mask_storeu_ps(o + c, m, acc);
  }
}
#else
void accumulate_pv(float* o, const float* p, const float* v, const int64_t* slots, int64_t kn, int64_t tstride,
                   int64_t hd) {
  accumulate_pv_portable(o, p, v, slots, kn, tstride, hd);
}
#endif

// exp(x) for x <= 0 (softmax weights: a score minus the running max), one fixed sequence of IEEE
// operations so that the vector and scalar paths agree bit for bit: n = round(x log2 e), r = x - n ln 2
// (in two parts, by fma), a degree-7 Taylor polynomial in r (|r| <= ln 2 / 2: relative error below
// 1e-8 before rounding, within 2 ulp of std::exp), scaled by 2^n through the exponent bits. Below
// -87 (2^-126, where fp32 turns subnormal) and at -inf: 0.
constexpr float kLog2e = 1.44269504f, kLn2Hi = 0.693145752f, kLn2Lo = 1.42860677e-6f, kExpMin = -87.0f;
constexpr float kExpC[8] = {1.0f, 1.0f, 0.5f, 1.0f / 6, 1.0f / 24, 1.0f / 120, 1.0f / 720, 1.0f / 5040};

float exp_nonpositive_scalar(float x) {
  if (!(x >= kExpMin)) return 0.0f;  // also NaN-free: scores are finite or -inf
  const float n = std::nearbyint(x * kLog2e);
  float r = std::fma(n, -kLn2Hi, x);
  r = std::fma(n, -kLn2Lo, r);
  float p = kExpC[7];
  for (int i = 6; i >= 0; --i) p = std::fma(p, r, kExpC[i]);
  int32_t bits;
  std::memcpy(&bits, &p, 4);
  bits += int32_t(n) * (1 << 23);
  std::memcpy(&p, &bits, 4);
  return p;
}

void exp_shifted_portable(float* s, int64_t n, float mx) {
  for (int64_t j = 0; j < n; ++j) s[j] = exp_nonpositive_scalar(s[j] - mx);
}

#if defined(__AVX512F__)
void exp_shifted(float* s, int64_t n, float mx) {
  const __m512 vmx = _mm512_set1_ps(mx);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = first_lanes(n - j);
    const __m512 x = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + j), vmx);
    const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kExpMin), _CMP_GE_OQ);
    const __m512 nn = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(nn, _mm512_set1_ps(-kLn2Hi), x);
    r = _mm512_fmadd_ps(nn, _mm512_set1_ps(-kLn2Lo), r);
    __m512 p = _mm512_set1_ps(kExpC[7]);
    for (int i = 6; i >= 0; --i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpC[i]));
    const __m512i bits = _mm512_add_epi32(_mm512_castps_si512(p), _mm512_slli_epi32(_mm512_cvtps_epi32(nn), 23));
    _mm512_mask_storeu_ps(s + j, m, _mm512_maskz_mov_ps(live, _mm512_castsi512_ps(bits)));
  }
}
#else
void exp_shifted(float* s, int64_t n, float mx) { exp_shifted_portable(s, n, mx); }
#endif

// Requests the cache lines of x[0, len) (a key or value row) ahead of their loads.
inline void prefetch_row(const float* x, int64_t len) {
  for (int64_t c = 0; c < len; c += 16) __builtin_prefetch(x + c, 0, 3);
}

}  // namespace

void paged_exp(float* s, int64_t n, float mx, bool portable) {
  (portable ? exp_shifted_portable : exp_shifted)(s, n, mx);
}

void paged_pv(float* o, const float* p, const float* v, const int64_t* slots, int64_t kn, int64_t tstride, int64_t hd,
              bool portable) {
  (portable ? accumulate_pv_portable : accumulate_pv)(o, p, v, slots, kn, tstride, hd);
}

void paged_scores(float* s, const float* q, const float* k, const int64_t* slots, int64_t kn, int64_t tstride,
                  int64_t hd, float scale, bool portable) {
  (portable ? scores_portable : scores)(s, q, k, slots, kn, tstride, hd, scale);
}

STRATA_CPU_CLONES
void attention_decode_paged(float* out, float* lse, const float* q, const float* k_cache, const float* v_cache,
                            const int32_t* block_table, const int32_t* seq_lens, int64_t B, int64_t Hq, int64_t Hkv,
                            int64_t hd_qk, int64_t hd_v, float scale, int64_t k_tstride, int64_t v_tstride,
                            int64_t block_size, int64_t max_blocks, int64_t num_blocks, int64_t window,
                            bool /*split_keys: one pass per query here anyway*/) {
  STRATA_CHECK(B >= 0 && Hq > 0 && Hkv > 0 && Hq % Hkv == 0,
               "attention_decode_paged: kv heads ({}) must divide query heads ({}) (B={})", Hkv, Hq, B);
  STRATA_CHECK(hd_qk > 0 && hd_v > 0, "attention_decode_paged: head dims must be positive (got qk {}, v {})", hd_qk,
               hd_v);
  STRATA_CHECK(std::isfinite(scale) && scale > 0, "attention_decode_paged: softmax scale must be positive (got {})",
               scale);
  STRATA_CHECK(block_size > 0 && max_blocks > 0 && num_blocks > 0,
               "attention_decode_paged: block_size ({}), max_blocks ({}), num_blocks ({}) must be positive", block_size,
               max_blocks, num_blocks);
  STRATA_CHECK(k_tstride >= Hkv * hd_qk && v_tstride >= Hkv * hd_v,
               "attention_decode_paged: slot strides k {} / v {} below Hkv*hd_qk = {} / Hkv*hd_v = {}", k_tstride,
               v_tstride, Hkv * hd_qk, Hkv * hd_v);
  STRATA_CHECK(window >= 0, "attention_decode_paged: window must be >= 0 (0 = full causal; got {})", window);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = seq_lens[b];
    STRATA_CHECK(n >= 0 && n <= max_blocks * block_size,
                 "attention_decode_paged: seq_lens[{}] = {} outside [0, max_blocks*block_size = {}]", b, n,
                 max_blocks * block_size);
    for (int64_t i = 0; i < (n + block_size - 1) / block_size; ++i) {
      const int64_t blk = block_table[b * max_blocks + i];
      STRATA_CHECK(blk >= 0 && blk < num_blocks, "attention_decode_paged: block_table[{}][{}] = {} outside [0, {})",
                   b, i, blk, num_blocks);
    }
  }
  constexpr int64_t kBK = 64;
  const int64_t G = Hq / Hkv;
  const float ninf = -std::numeric_limits<float>::infinity();

#pragma omp parallel
  {
    std::vector<float> buf(size_t(G * kBK + G * hd_v + 2 * G));
    float* S = buf.data();   // [G, kBK] scores, then probabilities
    float* O = S + G * kBK;  // [G, hd_v] unnormalised output
    float* m = O + G * hd_v; // [G] running max
    float* l = m + G;        // [G] running sum
    std::vector<int64_t> slots(kBK), next(kBK);
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < B * Hkv; ++task) {
      const int64_t b = task / Hkv, kvh = task % Hkv, n = seq_lens[b];
      const float* qg = q + (b * Hq + kvh * G) * hd_qk;  // the G query rows of this kv head
      std::fill(O, O + G * hd_v, 0.0f);
      std::fill(m, m + G, ninf);
      std::fill(l, l + G, 0.0f);
      // The slots of the tile from j0 (its keys' places in the pool), and their key and value rows
      // requested from memory: the pages of a sequence lie anywhere in the pool, so the hardware
      // prefetcher does not follow them, and without this a long decode waited on each row
      // (measured: half of a 2k-context decode step in attention, at 5 GB/s). Each tile's rows are
      // requested while the tile before it is computed.
      auto gather = [&](int64_t j0, std::vector<int64_t>& into) {
        const int64_t kn = std::min(kBK, n - j0);
        for (int64_t j = 0; j < kn; ++j) {
          const int64_t t = j0 + j;
          into[size_t(j)] = int64_t(block_table[b * max_blocks + t / block_size]) * block_size + t % block_size;
          prefetch_row(k_cache + into[size_t(j)] * k_tstride + kvh * hd_qk, hd_qk);
          prefetch_row(v_cache + into[size_t(j)] * v_tstride + kvh * hd_v, hd_v);
        }
      };
      // With a window, the keys from max(0, n - window) on (the last `window` positions).
      const int64_t first = window > 0 ? std::max<int64_t>(0, n - window) : 0;
      if (first < n) gather(first, next);
      for (int64_t j0 = first; j0 < n; j0 += kBK) {
        const int64_t kn = std::min(kBK, n - j0);
        std::swap(slots, next);
        if (j0 + kBK < n) gather(j0 + kBK, next);
        for (int64_t g = 0; g < G; ++g) {
          float* s = S + g * kBK;
          float mx = m[g];
          scores(s, qg + g * hd_qk, k_cache + kvh * hd_qk, slots.data(), kn, k_tstride, hd_qk, scale);
          for (int64_t j = 0; j < kn; ++j) mx = std::max(mx, s[j]);
          const float alpha = exp_nonpositive_scalar(m[g] - mx);  // m = -inf before the first tile: 0
          exp_shifted(s, kn, mx);
          float sum = 0.0f;
          for (int64_t j = 0; j < kn; ++j) sum += s[j];
          l[g] = l[g] * alpha + sum;
          m[g] = mx;
          float* o = O + g * hd_v;
          for (int64_t c = 0; c < hd_v; ++c) o[c] *= alpha;
          accumulate_pv(o, s, v_cache + kvh * hd_v, slots.data(), kn, v_tstride, hd_v);
        }
      }
      for (int64_t g = 0; g < G; ++g) {
        const int64_t h = kvh * G + g;
        const float inv = l[g] > 0.0f ? 1.0f / l[g] : 0.0f;
        for (int64_t c = 0; c < hd_v; ++c) out[(b * Hq + h) * hd_v + c] = O[g * hd_v + c] * inv;
        if (lse) lse[b * Hq + h] = l[g] > 0.0f ? m[g] + std::log(l[g]) : ninf;
      }
    }
  }
}

}  // namespace strata::cpu

#pragma GCC diagnostic pop
