// Decode attention over a paged kv cache (see attention.h): the CPU reference of the CUDA twin's
// paged flash-decoding. One task per (sequence, kv head) packs the G query heads that read the kv
// head, so every cached key and value is read once per kv head; keys go in tiles of kBK with an
// online softmax, like attention_forward's decode path, in a fixed order (thread-count independent).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/isa.h"

namespace strata::cpu {

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
    std::vector<int64_t> slots(kBK);
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < B * Hkv; ++task) {
      const int64_t b = task / Hkv, kvh = task % Hkv, n = seq_lens[b];
      const float* qg = q + (b * Hq + kvh * G) * hd_qk;  // the G query rows of this kv head
      std::fill(O, O + G * hd_v, 0.0f);
      std::fill(m, m + G, ninf);
      std::fill(l, l + G, 0.0f);
      // With a window, the keys from max(0, n - window) on (the last `window` positions).
      for (int64_t j0 = window > 0 ? std::max<int64_t>(0, n - window) : 0; j0 < n; j0 += kBK) {
        const int64_t kn = std::min(kBK, n - j0);
        for (int64_t j = 0; j < kn; ++j) {
          const int64_t t = j0 + j;
          slots[j] = int64_t(block_table[b * max_blocks + t / block_size]) * block_size + t % block_size;
        }
        for (int64_t g = 0; g < G; ++g) {
          float* s = S + g * kBK;
          float mx = m[g];
          for (int64_t j = 0; j < kn; ++j) {
            const float* kr = k_cache + slots[j] * k_tstride + kvh * hd_qk;
            // Lanes of partial sums (a fixed order for a given head size, so still one fixed
            // sequence per query): a serial sum would keep this loop scalar.
            float d = 0.0f;
#pragma omp simd reduction(+ : d)
            for (int64_t c = 0; c < hd_qk; ++c) d += qg[g * hd_qk + c] * kr[c];
            s[j] = d * scale;
            mx = std::max(mx, s[j]);
          }
          const float alpha = std::exp(m[g] - mx);  // m = -inf before the first tile: 0
          float sum = 0.0f;
          for (int64_t j = 0; j < kn; ++j) sum += (s[j] = std::exp(s[j] - mx));
          l[g] = l[g] * alpha + sum;
          m[g] = mx;
          float* o = O + g * hd_v;
          for (int64_t c = 0; c < hd_v; ++c) o[c] *= alpha;
          for (int64_t j = 0; j < kn; ++j) {
            const float* vr = v_cache + slots[j] * v_tstride + kvh * hd_v;
            const float p = s[j];
#pragma omp simd
            for (int64_t c = 0; c < hd_v; ++c) o[c] += p * vr[c];
          }
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
