// Mixture-of-experts plumbing around the expert GEMMs: router softmax + top-k, the Switch
// load-balancing loss, and the permutation that groups tokens by expert so that every expert runs
// one GEMM over contiguous rows. Every reduction runs in an order that does not depend on the
// thread count (bit-exact resume, docs/kernels.md).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/moe.h"

namespace strata::cpu {
namespace {

// Threads only pay off above a few tens of microseconds of work.
constexpr int64_t kParallelMin = int64_t(1) << 14;

// Columns per task of the scatter-add: threads own disjoint column blocks, so a token hit by
// several rows needs no atomics and its sum runs in row order whatever the thread count.
constexpr int64_t kScatterCols = 64;

}  // namespace

// probs = softmax(logits) per row; top-k by (prob descending, index ascending), found by k scans
// that each take the best entry strictly after the previous pick in that order (no "taken" mask).
// logits[N, E] -> probs[N, E], idx[N, k], gate[N, k]
STRATA_CPU_CLONES
void moe_route_forward(int32_t* idx, float* gate, float* probs, const float* logits, int64_t N, int64_t E,
                       int64_t k, bool renorm) {
  STRATA_CHECK(k >= 1 && k <= E, "moe_route_forward: top_k {} must be in [1, experts = {}]", k, E);
#pragma omp parallel for schedule(static) if (N * E > kParallelMin)
  for (int64_t n = 0; n < N; ++n) {
    const float* l = logits + n * E;
    float* p = probs + n * E;
    float m = l[0];
    for (int64_t e = 1; e < E; ++e) m = l[e] > m ? l[e] : m;
    float sum = 0.0f;
    for (int64_t e = 0; e < E; ++e) {
      p[e] = std::exp(l[e] - m);
      sum += p[e];
    }
    const float inv = 1.0f / sum;
    for (int64_t e = 0; e < E; ++e) p[e] *= inv;

    int32_t* ix = idx + n * k;
    float* g = gate + n * k;
    float prev_p = INFINITY;
    int64_t prev_e = -1;
    float gsum = 0.0f;
    for (int64_t j = 0; j < k; ++j) {
      int64_t best = -1;
      float bp = -1.0f;
      for (int64_t e = 0; e < E; ++e) {
        const float pe = p[e];
        const bool after_prev = pe < prev_p || (pe == prev_p && e > prev_e);
        if (after_prev && pe > bp) bp = pe, best = e;  // strict '>' keeps the lower index on ties
      }
      if (best < 0) {
        // Only NaN probabilities are left (non-finite router logits): route to the lowest expert not
        // yet picked so the indices stay valid; the NaN gate carries on into the loss, which the
        // trainer's non-finite guard then skips, instead of an out-of-range expert index here.
        for (int64_t e = 0; e < E && best < 0; ++e)
          if (std::find(ix, ix + j, int32_t(e)) == ix + j) best = e, bp = p[e];
      }
      ix[j] = int32_t(best);
      g[j] = bp;
      gsum += bp;
      prev_p = bp;
      prev_e = best;
    }
    if (renorm) {
      const float r = 1.0f / gsum;
      for (int64_t j = 0; j < k; ++j) g[j] *= r;
    }
  }
}

// With renorm, gate_j = p_j / S (S = sum of the k picked probs): dp_j = (dgate_j - <dgate, gate>) / S;
// without, dp_j = dgate_j. Through the softmax: dlogits_e = p_e (dp_e - <p, dp>), dp zero off the top-k.
// dgate[N, k], probs[N, E], idx/gate[N, k] -> dlogits[N, E] (assigned)
STRATA_CPU_CLONES
void moe_route_backward(float* dlogits, const float* dgate, const float* probs, const int32_t* idx,
                        const float* gate, int64_t N, int64_t E, int64_t k, bool renorm) {
#pragma omp parallel for schedule(static) if (N * E > kParallelMin)
  for (int64_t n = 0; n < N; ++n) {
    const float* p = probs + n * E;
    const float* dg = dgate + n * k;
    const int32_t* ix = idx + n * k;
    float* dl = dlogits + n * E;
    float c = 0.0f, inv_s = 1.0f;
    if (renorm) {
      float s = 0.0f;
      for (int64_t j = 0; j < k; ++j) {
        c += dg[j] * gate[n * k + j];
        s += p[ix[j]];
      }
      inv_s = 1.0f / s;
    }
    float dot = 0.0f;  // <p, dp>
    for (int64_t j = 0; j < k; ++j) dot += p[ix[j]] * (dg[j] - c) * inv_s;
    for (int64_t e = 0; e < E; ++e) dl[e] = -p[e] * dot;
    for (int64_t j = 0; j < k; ++j) dl[ix[j]] += p[ix[j]] * (dg[j] - c) * inv_s;
  }
}

// loss = E * sum_e f_e P_e, f_e = count_e / (N k), P_e = mean_n probs[n, e]; sums in double, in row
// order. probs[N, E], idx[N, k] -> loss
float moe_aux_loss_forward(const float* probs, const int32_t* idx, int64_t N, int64_t E, int64_t k) {
  if (N == 0) return 0.0f;
  std::vector<double> P(size_t(E), 0.0), cnt(size_t(E), 0.0);
  for (int64_t n = 0; n < N; ++n) {
    const float* p = probs + n * E;
    for (int64_t e = 0; e < E; ++e) P[e] += p[e];
  }
  for (int64_t i = 0; i < N * k; ++i) {
    STRATA_CHECK(idx[i] >= 0 && idx[i] < E, "moe_aux_loss_forward: expert index {} outside [0, {})", idx[i], E);
    cnt[idx[i]] += 1.0;
  }
  double loss = 0.0;
  for (int64_t e = 0; e < E; ++e) loss += (cnt[e] / double(N * k)) * (P[e] / double(N));
  return float(double(E) * loss);
}

// d loss / d probs[n, e] = E f_e / N =: g_e (f held constant); through the softmax
// dlogits[n, e] += coef * p_e (g_e - <p_n, g>).   probs[N, E], idx[N, k] -> dlogits[N, E] (accumulated)
STRATA_CPU_CLONES
void moe_aux_loss_backward(float* dlogits, const float* probs, const int32_t* idx, float coef, int64_t N,
                           int64_t E, int64_t k) {
  if (N == 0 || coef == 0.0f) return;
  std::vector<float> g(size_t(E), 0.0f);
  for (int64_t i = 0; i < N * k; ++i) {
    STRATA_CHECK(idx[i] >= 0 && idx[i] < E, "moe_aux_loss_backward: expert index {} outside [0, {})", idx[i], E);
    g[idx[i]] += 1.0f;
  }
  // count_e / (N k) * E / N, folded with coef.
  const float scale = coef * float(E) / (float(N) * float(N) * float(k));
  for (auto& v : g) v *= scale;
  const float* gp = g.data();
#pragma omp parallel for schedule(static) if (N * E > kParallelMin)
  for (int64_t n = 0; n < N; ++n) {
    const float* p = probs + n * E;
    float* dl = dlogits + n * E;
    float dot = 0.0f;
    for (int64_t e = 0; e < E; ++e) dot += p[e] * gp[e];
    for (int64_t e = 0; e < E; ++e) dl[e] += p[e] * (gp[e] - dot);
  }
}

// Stable counting sort of the N*k assignments by expert. idx[N, k] -> offsets[E+1], row_token[N*k],
// row_of[N*k]. Serial: O(N k) integer work, far below the GEMMs it feeds.
void moe_permute_indices(int32_t* offsets, int32_t* row_token, int32_t* row_of, const int32_t* idx, int64_t N,
                         int64_t E, int64_t k) {
  for (int64_t e = 0; e <= E; ++e) offsets[e] = 0;
  for (int64_t i = 0; i < N * k; ++i) {
    STRATA_CHECK(idx[i] >= 0 && idx[i] < E, "moe_permute_indices: expert index {} of assignment {} outside [0, {})",
                 idx[i], i, E);
    ++offsets[idx[i] + 1];
  }
  for (int64_t e = 0; e < E; ++e) offsets[e + 1] += offsets[e];
  std::vector<int32_t> cursor(offsets, offsets + E);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < k; ++j) {
      const int32_t r = cursor[idx[n * k + j]]++;
      row_token[r] = int32_t(n);
      row_of[n * k + j] = r;
    }
}

// xp[r, :] = x[row_token[r], :]   x[N, D] -> xp[rows, D]
STRATA_CPU_CLONES
void moe_gather_rows(float* xp, const float* x, const int32_t* row_token, int64_t rows, int64_t D) {
#pragma omp parallel for schedule(static) if (rows * D > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) std::memcpy(xp + r * D, x + int64_t(row_token[r]) * D, sizeof(float) * D);
}

// y[n, :] = sum_j gate[n, j] * yp[row_of[n k + j], :]   yp[N k, D], gate[N, k] -> y[N, D] (assigned)
STRATA_CPU_CLONES
void moe_combine_forward(float* y, const float* yp, const float* gate, const int32_t* row_of, int64_t N, int64_t k,
                         int64_t D) {
#pragma omp parallel for schedule(static) if (N * k * D > kParallelMin)
  for (int64_t n = 0; n < N; ++n) {
    float* __restrict yr = y + n * D;
    const float g0 = gate[n * k];
    const float* __restrict s0 = yp + int64_t(row_of[n * k]) * D;
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) yr[d] = g0 * s0[d];
    for (int64_t j = 1; j < k; ++j) {
      const float g = gate[n * k + j];
      const float* __restrict s = yp + int64_t(row_of[n * k + j]) * D;
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) yr[d] += g * s[d];
    }
  }
}

// dyp[row_of[n k + j], :] = gate[n, j] dy[n, :]; dgate[n, j] = <dy[n], yp[row_of[n k + j]]> (both assigned).
// row_of is a bijection, so every row of dyp is written exactly once.
STRATA_CPU_CLONES
void moe_combine_backward(float* dyp, float* dgate, const float* dy, const float* yp, const float* gate,
                          const int32_t* row_of, int64_t N, int64_t k, int64_t D) {
#pragma omp parallel for schedule(static) if (N * k * D > kParallelMin)
  for (int64_t n = 0; n < N; ++n) {
    const float* __restrict dyr = dy + n * D;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t r = row_of[n * k + j];
      const float g = gate[n * k + j];
      const float* __restrict s = yp + r * D;
      float* __restrict o = dyp + r * D;
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int64_t d = 0; d < D; ++d) {
        o[d] = g * dyr[d];
        dot += dyr[d] * s[d];
      }
      dgate[n * k + j] = dot;
    }
  }
}

// dx[row_token[r], :] += dxp[r, :]   dxp[rows, D] -> dx[N, D] (accumulated)
STRATA_CPU_CLONES
void moe_scatter_add_rows(float* dx, const float* dxp, const int32_t* row_token, int64_t rows, int64_t D) {
  const int64_t nblk = (D + kScatterCols - 1) / kScatterCols;
#pragma omp parallel for schedule(static) if (rows * D > kParallelMin && nblk > 1)
  for (int64_t b = 0; b < nblk; ++b) {
    const int64_t d0 = b * kScatterCols, d1 = d0 + kScatterCols < D ? d0 + kScatterCols : D;
    for (int64_t r = 0; r < rows; ++r) {
      float* __restrict o = dx + int64_t(row_token[r]) * D;
      const float* __restrict s = dxp + r * D;
#pragma omp simd
      for (int64_t d = d0; d < d1; ++d) o[d] += s[d];
    }
  }
}

}  // namespace strata::cpu
