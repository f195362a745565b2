// Causal flash attention (forward with online softmax, FlashAttention-2 backward), see attention.h.
//
// Work is organised around a kv head: the G = Hq / Hkv query heads that read it are packed as the rows
// of one tile, row r = (query position i, group head g), so a K/V tile loaded once serves all of them.
// (For a fixed position the G heads of a group are adjacent in q[B, T, Hq, hd], so the packing is a
// contiguous copy.) This matters most for decode, where a step reads the whole cache: every cached
// key/value is touched once per kv head instead of once per query head.
//
// Tiles: kBK = 64 keys; query blocks of about kRows rows. Every product inside a tile is one
// register-blocked kernel (micro below): forward scores as St = K Q^T with Q^T built once per task
// (K is read in place, never copied), backward scores as Q K^T with the K/V tile transposed once
// per key tile (amortised over all query blocks below it). Decode (a handful of rows) takes dot
// products straight from the cache instead. Every reduction runs in a fixed order inside one task,
// so results do not depend on the thread count.
//
// Sliding window (window > 0): row r sees keys lo[r]..pos[r], lo = max(0, pos - window + 1). The
// forward starts its key tiles at the block's first lower bound instead of 0 and masks below lo as
// it masks above pos; the backward skips the query blocks that see nothing of a key tile.
//
// qk and v head dims are separate (MLA: 192 / 128 expanded, 576 / 512 over the latent cache) and
// key/value rows are strided independently, so an absorbed MLA decode step reads k (the whole
// cached row) and v (its first kv_lora_rank channels) from the same cache rows in place. Equal dims
// of 16..128 take compile-time specialisations; anything else the run-time path (64-wide panels).
//
// Measured on the 2-core dev box (1 thread, -O3 -march=native; causal flops counted, the backward
// as 2.5x the forward): B=16 T=256 Hq=8 Hkv=2 hd=32 forward 7.4 ms (73 GFLOP/s), backward 17 ms
// (80 GFLOP/s); decode B=1 over a 1024-token cache, Hq=8 Hkv=2 hd=64: 32 us. The first version
// (plain loops over accumulator arrays, K transposed per query block) ran at 25-35 GFLOP/s.
#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/scan_math.h"

namespace strata::cpu {
namespace {

using ssm_math::exp_nonpos;

constexpr int64_t kBK = 64;    // keys per tile
constexpr int64_t kRows = 64;  // target rows (query positions x group heads) per tile
// A query block spans at most kRows positions, so with a sliding window every row's lowest visible
// key lies in the block's first key tile: the running max is finite after it (softmax_tile_*).
static_assert(kRows <= kBK);
// Below this many rows the forward takes scores as dot products straight from K and keeps them by
// rows: the transposed layout would pad the rows to a whole vector (8x waste for MHA decode).
constexpr int64_t kTransposeRows = 8;

// GCC vector of 8 floats (one AVX2 register). Plain loops over accumulator arrays are not kept in
// registers by GCC (it stores and reloads them every iteration, measured at 3x slower); vectors in
// fully unrolled fixed-size loops are. (-Wpsabi: the by-value ABI note is irrelevant for inline
// helpers in an anonymous namespace.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
using v8 = float __attribute__((vector_size(32)));
inline v8 ld8(const float* p) {
  v8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void st8(float* p, const v8& v) { std::memcpy(p, &v, sizeof(v)); }
inline float hsum8(const v8& v) {
  const v8 a = v + __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3);
  const v8 b = a + __builtin_shufflevector(a, a, 2, 3, 0, 1, 6, 7, 4, 5);
  return b[0] + b[1];
}

// The one product shape of every tile operation, for RB output rows of 8*NV floats at column oc:
//   out[a][oc:oc+8NV] (= 0 if kInit) += sum_{k<K} C[a*ca + k*ck] * X[k*xs + 0:8NV],  a < RB,
// summed in k order. RB x NV accumulators stay in registers; per k, NV loads of X and RB broadcasts
// of C feed RB*NV FMAs. Strides let the same kernel read C by rows (K Q^T, P V, dS K) or by columns
// (P^T V, P^T dO, dS^T Q), and output rows are pointers so dq can be updated where it lives.
// Always inlined: GCC's generic tuning (the portable build) otherwise calls it out of line from
// rows_gemm, which cost 3 % of a transformer_small training step (docs/clusters.md).
template <int NV, int RB, bool kInit>
[[gnu::always_inline]] inline void micro(float* const* out, int64_t oc, const float* __restrict C, int64_t ca,
                                         int64_t ck, const float* __restrict X, int64_t xs, int64_t K) {
  v8 acc[RB][NV];
  for (int a = 0; a < RB; ++a)
    for (int v = 0; v < NV; ++v) acc[a][v] = kInit ? v8{} : ld8(out[a] + oc + 8 * v);
  for (int64_t k = 0; k < K; ++k) {
    v8 x[NV];
    for (int v = 0; v < NV; ++v) x[v] = ld8(X + k * xs + 8 * v);
    for (int a = 0; a < RB; ++a) {
      const float c = C[a * ca + k * ck];
      for (int v = 0; v < NV; ++v) acc[a][v] += c * x[v];
    }
  }
  for (int a = 0; a < RB; ++a)
    for (int v = 0; v < NV; ++v) st8(out[a] + oc + 8 * v, acc[a][v]);
}

// micro over A rows: blocks of RB, then the remainder with halved blocks. RB * NV ~ 16 accumulators.
template <int NV, bool kInit, int RB = (NV >= 16 ? 1 : 16 / NV)>
void rows_gemm(float* const* out, int64_t oc, int64_t A, const float* C, int64_t ca, int64_t ck, const float* X,
               int64_t xs, int64_t K) {
  int64_t a = 0;
  for (; a + RB <= A; a += RB) micro<NV, RB, kInit>(out + a, oc, C + a * ca, ca, ck, X, xs, K);
  if constexpr (RB > 1)
    if (a < A) rows_gemm<NV, kInit, RB / 2>(out + a, oc, A - a, C + a * ca, ca, ck, X, xs, K);
}

// rows_gemm over a width W that is a multiple of 8: 64-column panels, then one narrower panel.
template <bool kInit>
void gemm_w(float* const* out, int64_t A, const float* C, int64_t ca, int64_t ck, const float* X, int64_t xs,
            int64_t K, int64_t W) {
  int64_t c0 = 0;
  for (; c0 + 64 <= W; c0 += 64) rows_gemm<8, kInit>(out, c0, A, C, ca, ck, X + c0, xs, K);
  switch ((W - c0) / 8) {
    case 1: return rows_gemm<1, kInit>(out, c0, A, C, ca, ck, X + c0, xs, K);
    case 2: return rows_gemm<2, kInit>(out, c0, A, C, ca, ck, X + c0, xs, K);
    case 3: return rows_gemm<3, kInit>(out, c0, A, C, ca, ck, X + c0, xs, K);
    case 4: return rows_gemm<4, kInit>(out, c0, A, C, ca, ck, X + c0, xs, K);
    case 5: return rows_gemm<5, kInit>(out, c0, A, C, ca, ck, X + c0, xs, K);
    case 6: return rows_gemm<6, kInit>(out, c0, A, C, ca, ck, X + c0, xs, K);
    case 7: return rows_gemm<7, kInit>(out, c0, A, C, ca, ck, X + c0, xs, K);
    default: return;
  }
}

// The same product for a width that is not a multiple of 8: plain loops.
void rows_gemm_any(float* const* out, int64_t A, const float* C, int64_t ca, int64_t ck, const float* X, int64_t xs,
                   int64_t K, int64_t W) {
  for (int64_t a = 0; a < A; ++a) {
    float* o = out[a];
    for (int64_t k = 0; k < K; ++k) {
      const float c = C[a * ca + k * ck];
      const float* x = X + k * xs;
#pragma omp simd
      for (int64_t d = 0; d < W; ++d) o[d] += c * x[d];
    }
  }
}

// out rows [A, hd] += C X with X rows of width hd (P V, dS K, P^T dO, dS^T Q). HD = 0: any hd.
template <int HD>
inline void tile_acc(float* const* out, int64_t A, const float* C, int64_t ca, int64_t ck, const float* X, int64_t xs,
                     int64_t K, int64_t hd) {
  if constexpr (HD > 0)
    rows_gemm<HD / 8, false>(out, 0, A, C, ca, ck, X, xs, K);
  else if (hd % 8 == 0)
    gemm_w<false>(out, A, C, ca, ck, X, xs, K, hd);
  else
    rows_gemm_any(out, A, C, ca, ck, X, xs, K, hd);
}

// S[R, kBK] = Q[R, hd] Kt[hd, kBK] (rows of S given by pointers), in two 32-column halves so that
// 4 rows x 32 columns of accumulators fit the registers; the second half is skipped when the tile
// has at most 32 keys.
void scores_t(float* const* Srows, int64_t R, const float* Q, const float* Kt, int64_t hd, int64_t kn) {
  rows_gemm<4, true>(Srows, 0, R, Q, hd, 1, Kt, kBK, hd);
  if (kn > 32) rows_gemm<4, true>(Srows, 32, R, Q, hd, 1, Kt + 32, kBK, hd);
}

// S[r, j] = Q[r] . K_j for r < R, j < kn, K_j at K + j * ks: dot products that read K in place
// (decode, where a few rows would not amortise a transposed copy of Q).
template <int HD>
void scores_dot(float* __restrict S, const float* __restrict Q, const float* __restrict K, int64_t ks, int64_t R,
                int64_t kn, int64_t hd_rt) {
  for (int64_t j = 0; j < kn; ++j) {
    const float* k = K + j * ks;
    for (int64_t r = 0; r < R; ++r) {
      const float* q = Q + r * (HD ? HD : hd_rt);
      if constexpr (HD > 0) {
        v8 acc = ld8(q) * ld8(k);
        for (int v = 1; v < HD / 8; ++v) acc += ld8(q + 8 * v) * ld8(k + 8 * v);
        S[r * kBK + j] = hsum8(acc);
      } else {
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t c = 0; c < hd_rt; ++c) s += q[c] * k[c];
        S[r * kBK + j] = s;
      }
    }
  }
}
#pragma GCC diagnostic pop

// Kt[hd, kBK] = transpose of kn rows of K (row j at K + j * ks); columns kn.. are zero.
void transpose_tile(float* __restrict Kt, const float* __restrict K, int64_t ks, int64_t kn, int64_t hd) {
  for (int64_t j = 0; j < kn; ++j)
    for (int64_t c = 0; c < hd; ++c) Kt[c * kBK + j] = K[j * ks + c];
  for (int64_t c = 0; c < hd; ++c)
    for (int64_t j = kn; j < kBK; ++j) Kt[c * kBK + j] = 0.0f;
}

// Rows (query positions) per block so that a block has about kRows rows of G heads each.
int64_t query_block(int64_t G) { return std::max<int64_t>(1, kRows / G); }

// Below this many multiply-adds (a decode step over a short cache) one thread does the call: waking
// the team costs more than it saves.
constexpr int64_t kParallelWork = int64_t(1) << 18;

// exp(d) for d <= 0 that is exactly 0 for d = -inf (masked scores, the running max before the
// first tile): below -100 the result is 0 anyway, and the clamp keeps exp_nonpos in its range.
inline float exp_clamped(float d) { return exp_nonpos(d > -100.0f ? d : -100.0f); }

// Online-softmax update for one key tile with scores by rows, S[r, 0:kn] (stride kBK); row r sees
// keys lo[r]..pos[r]. Scores become probabilities (0 where masked), m and l are updated, alpha[r]
// receives the factor for the row's previous output.
STRATA_CPU_CLONES
void softmax_tile_rows(float* S, int64_t R, int64_t kn, int64_t j0, const int64_t* pos, const int64_t* lo, float* m,
                       float* l, float* alpha) {
  for (int64_t r = 0; r < R; ++r) {
    float* s = S + r * kBK;
    const int64_t n = std::clamp<int64_t>(pos[r] - j0 + 1, 0, kn);
    const int64_t j1 = std::clamp<int64_t>(lo[r] - j0, 0, n);
    float mx = m[r];
#pragma omp simd reduction(max : mx)
    for (int64_t j = j1; j < n; ++j) mx = s[j] > mx ? s[j] : mx;
    alpha[r] = exp_clamped(m[r] - mx);
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = j1; j < n; ++j) {
      const float p = exp_nonpos(s[j] - mx);
      s[j] = p;
      sum += p;
    }
    for (int64_t j = 0; j < j1; ++j) s[j] = 0.0f;
    for (int64_t j = n; j < kn; ++j) s[j] = 0.0f;
    l[r] = l[r] * alpha[r] + sum;
    m[r] = mx;
  }
}

// The same update with scores transposed, St[j, r] (stride rs) for W rows: vectors run across rows.
// masked: some key of the tile lies above a row's pos (causal) or below its lo (sliding window).
STRATA_CPU_CLONES
void softmax_tile_cols(float* St, int64_t rs, int64_t W, int64_t kn, int64_t j0, const int64_t* pos,
                       const int64_t* lo, bool masked, float* m, float* l, float* mx, float* alpha) {
  const float ninf = -std::numeric_limits<float>::infinity();
  if (masked)
    for (int64_t j = 0; j < kn; ++j) {
      float* s = St + j * rs;
#pragma omp simd
      for (int64_t r = 0; r < W; ++r) s[r] = j0 + j > pos[r] || j0 + j < lo[r] ? ninf : s[r];
    }
  std::copy(m, m + W, mx);
  for (int64_t j = 0; j < kn; ++j) {
    const float* s = St + j * rs;
#pragma omp simd
    for (int64_t r = 0; r < W; ++r) mx[r] = s[r] > mx[r] ? s[r] : mx[r];
  }
  // Every row sees a key of its block's first tile (key 0, or its lo with a window), so mx is finite
  // after the first tile.
#pragma omp simd
  for (int64_t r = 0; r < W; ++r) {
    alpha[r] = exp_clamped(m[r] - mx[r]);
    l[r] *= alpha[r];
    m[r] = mx[r];
  }
  for (int64_t j = 0; j < kn; ++j) {
    float* s = St + j * rs;
#pragma omp simd
    for (int64_t r = 0; r < W; ++r) {
      const float p = exp_clamped(s[r] - mx[r]);
      s[r] = p;
      l[r] += p;
    }
  }
}

// One task per (batch, kv head, query block). Scores are formed transposed, St[key, row] = K Q^T:
// Q^T is built once per task (amortised over every key tile) and K is read in place as the
// broadcast operand, so no key tile is ever copied. The online softmax then runs along keys with
// vectors across rows, and O += P V reads P^T by columns. HK / HV: compile-time qk / v head dims
// (0: the run-time hk_rt / hv_rt); ks / vs: stride between consecutive keys / values of one head.
template <int HK, int HV>
STRATA_CPU_CLONES
void forward_impl(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B, int64_t Tq,
                  int64_t Tk, int64_t Hq, int64_t Hkv, int64_t hk_rt, int64_t hv_rt, float scale, int64_t kbs,
                  int64_t ks, int64_t vbs, int64_t vs, int64_t window) {
  const int64_t hk = HK ? HK : hk_rt, hv = HV ? HV : hv_rt;
  const int64_t G = Hq / Hkv;
  const int64_t BQ = query_block(G);
  const int64_t nqb = (Tq + BQ - 1) / BQ;
  const int64_t Rmax = BQ * G;
  const int64_t Rs = (Rmax + 7) / 8 * 8;  // row stride of St and Q^T: rows padded to whole vectors
  const int64_t ntasks = B * Hkv * nqb;
  const float ninf = -std::numeric_limits<float>::infinity();

#pragma omp parallel if (ntasks > 1 && B * Hq * Tq * Tk * (hk + hv) / 2 >= kParallelWork)
  {
    std::vector<float> buf(size_t(hk * Rs + Rmax * hv + kBK * Rs + 4 * Rs));
    float* Qt = buf.data();      // [hk, Rs] queries transposed and pre-scaled; [R, hk] rows for few rows
    float* Os = Qt + hk * Rs;    // [R, hv] unnormalised output
    float* St = Os + Rmax * hv;  // [kBK, Rs] scores, then probabilities
    float* m = St + kBK * Rs;    // [Rs] running max
    float* l = m + Rs;           // [Rs] running sum
    float* mx = l + Rs;          // [Rs] max after this tile
    float* alpha = mx + Rs;      // [Rs] rescale of the previous tiles
    std::vector<int64_t> posv(static_cast<size_t>(2 * Rs));
    int64_t* pos = posv.data();  // [Rs] position of each row
    int64_t* lo = pos + Rs;      // [Rs] lowest key each row sees (0 without a window)
    std::vector<float*> ptr(size_t(Rmax + kBK));
    float** Orow = ptr.data();
    float** Strow = Orow + Rmax;
    for (int64_t r = 0; r < Rmax; ++r) Orow[r] = Os + r * hv;
    for (int64_t j = 0; j < kBK; ++j) Strow[j] = St + j * Rs;
    // Late query blocks see more keys: dynamic scheduling evens out the triangle.
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntasks; ++task) {
      const int64_t qb = task % nqb, kvh = (task / nqb) % Hkv, b = task / (nqb * Hkv);
      const int64_t i0 = qb * BQ, i1 = std::min(Tq, i0 + BQ);
      const int64_t R = (i1 - i0) * G;
      const bool few = R < kTransposeRows;
      const int64_t W = few ? R : (R + 7) / 8 * 8;  // St columns in use
      const int64_t off = Tk - Tq;                  // position of query i is off + i
      for (int64_t i = i0; i < i1; ++i) {
        const float* src = q + ((b * Tq + i) * Hq + kvh * G) * hk;
        const int64_t r0 = (i - i0) * G;
        if (few) {
          for (int64_t c = 0; c < G * hk; ++c) Qt[r0 * hk + c] = src[c] * scale;
        } else {
          for (int64_t g = 0; g < G; ++g)
            for (int64_t c = 0; c < hk; ++c) Qt[c * Rs + r0 + g] = src[g * hk + c] * scale;
        }
      }
      if (!few)
        for (int64_t c = 0; c < hk; ++c) std::fill(Qt + c * Rs + R, Qt + c * Rs + W, 0.0f);
      for (int64_t r = 0; r < W; ++r) {
        pos[r] = off + i0 + std::min(r, R - 1) / G, m[r] = ninf, l[r] = 0.0f;
        lo[r] = window > 0 ? std::max<int64_t>(0, pos[r] - window + 1) : 0;
      }
      std::fill(Os, Os + R * hv, 0.0f);
      const float* kb = k + b * kbs + kvh * hk;
      const float* vb = v + b * vbs + kvh * hv;
      const int64_t kend = off + i1;  // keys [lo[0], kend) are visible to some row of the block
      for (int64_t j0 = lo[0]; j0 < kend; j0 += kBK) {
        const int64_t kn = std::min(kBK, kend - j0);
        const float* kt = kb + j0 * ks;
        if (few) {
          scores_dot<HK>(St, Qt, kt, ks, R, kn, hk);
          softmax_tile_rows(St, R, kn, j0, pos, lo, m, l, alpha);
        } else {
          gemm_w<true>(Strow, kn, kt, ks, 1, Qt, Rs, hk, W);
          softmax_tile_cols(St, Rs, W, kn, j0, pos, lo, window > 0 || j0 + kn - 1 > off + i0, m, l, mx, alpha);
        }
        for (int64_t r = 0; r < R; ++r) {
          float* o = Os + r * hv;
          const float a = alpha[r];
#pragma omp simd
          for (int64_t c = 0; c < hv; ++c) o[c] *= a;
        }
        // O += P V, with P by rows (few) or transposed
        tile_acc<HV>(Orow, R, St, few ? kBK : 1, few ? 1 : Rs, vb + j0 * vs, vs, kn, hv);
      }
      for (int64_t r = 0; r < R; ++r) {
        const int64_t i = i0 + r / G, h = kvh * G + r % G;
        const float inv = 1.0f / l[r];
        float* o = out + ((b * Tq + i) * Hq + h) * hv;
        for (int64_t c = 0; c < hv; ++c) o[c] = Os[r * hv + c] * inv;
        if (lse) lse[(b * Hq + h) * Tq + i] = m[r] + std::log(l[r]);
      }
    }
  }
}

// One task per (batch, kv head): it owns dk/dv of that head and dq of its G query heads, so no
// two tasks write the same memory. Key tiles outer, query blocks inner: a key tile's dK/dV stay in
// scratch while every query block that sees it passes; dq rows accumulate in place.
//   P = exp(S - lse), dP = dO V^T, dS = P (dP - D) with D = rowsum(dO O),
//   dV += P^T dO, dK += scale dS^T Q, dQ += scale dS K.
template <int HK, int HV>
STRATA_CPU_CLONES
void backward_impl(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
                   const float* out, const float* lse, int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t hk_rt,
                   int64_t hv_rt, float scale, int64_t window) {
  const int64_t hk = HK ? HK : hk_rt, hv = HV ? HV : hv_rt;
  const int64_t G = Hq / Hkv;
  const int64_t BQ = query_block(G);
  const int64_t Rmax = BQ * G;
  const int64_t ks = Hkv * hk, vs = Hkv * hv;  // key / value strides of one head
  const int64_t ntasks = B * Hkv;

#pragma omp parallel if (ntasks > 1 && B * Hq * T * T * (hk + hv) / 2 >= kParallelWork)
  {
    std::vector<float> buf(
        size_t(2 * T * G + Rmax * (hk + hv) + (hk + hv) * kBK + kBK * (hk + hv) + 2 * Rmax * kBK));
    float* Dr = buf.data();       // [T*G] rowsum(dO * O)
    float* Lr = Dr + T * G;       // [T*G] lse
    float* Qs = Lr + T * G;       // [R, hk] queries, pre-scaled
    float* dOs = Qs + Rmax * hk;  // [R, hv]
    float* Kt = dOs + Rmax * hv;  // [hk, kBK]
    float* Vt = Kt + hk * kBK;    // [hv, kBK]
    float* dKs = Vt + hv * kBK;   // [kBK, hk]
    float* dVs = dKs + kBK * hk;  // [kBK, hv]
    float* P = dVs + kBK * hv;    // [R, kBK]
    float* dS = P + Rmax * kBK;   // [R, kBK] dP, then dS
    std::vector<float*> ptr(size_t(3 * Rmax + 2 * kBK));
    float** Prow = ptr.data();
    float** dSrow = Prow + Rmax;
    float** dqrow = dSrow + Rmax;
    float** dKrow = dqrow + Rmax;
    float** dVrow = dKrow + kBK;
    for (int64_t r = 0; r < Rmax; ++r) {
      Prow[r] = P + r * kBK;
      dSrow[r] = dS + r * kBK;
    }
    for (int64_t j = 0; j < kBK; ++j) dKrow[j] = dKs + j * hk, dVrow[j] = dVs + j * hv;
#pragma omp for schedule(static)
    for (int64_t task = 0; task < ntasks; ++task) {
      const int64_t kvh = task % Hkv, b = task / Hkv;
      // Row r = i * G + g of this task is query head kvh * G + g at position i; its q/dq row starts
      // at qrow(i) + g * hk, its out/dout row at orow(i) + g * hv.
      auto qrow = [&](int64_t i) { return ((b * T + i) * Hq + kvh * G) * hk; };
      auto orow = [&](int64_t i) { return ((b * T + i) * Hq + kvh * G) * hv; };
      for (int64_t i = 0; i < T; ++i) {
        const float* o = out + orow(i);
        const float* go = dout + orow(i);
        for (int64_t g = 0; g < G; ++g) {
          float s = 0.0f;
#pragma omp simd reduction(+ : s)
          for (int64_t c = 0; c < hv; ++c) s += o[g * hv + c] * go[g * hv + c];
          Dr[i * G + g] = s;
          Lr[i * G + g] = lse[(b * Hq + kvh * G + g) * T + i];
        }
        std::fill(dq + qrow(i), dq + qrow(i) + G * hk, 0.0f);
      }
      const float* kb = k + b * T * ks + kvh * hk;
      const float* vb = v + b * T * vs + kvh * hv;
      for (int64_t j0 = 0; j0 < T; j0 += kBK) {
        const int64_t kn = std::min(kBK, T - j0);
        transpose_tile(Kt, kb + j0 * ks, ks, kn, hk);
        transpose_tile(Vt, vb + j0 * vs, vs, kn, hv);
        std::fill(dKs, dKs + kBK * hk, 0.0f);
        std::fill(dVs, dVs + kBK * hv, 0.0f);
        // Query blocks from the one holding position j0 to the last that sees the tile: with a
        // window, positions from j0 + kn - 1 + window on see no key of it.
        const int64_t iend = window > 0 ? std::min(T, j0 + kn - 1 + window) : T;
        for (int64_t i0 = j0 / BQ * BQ; i0 < iend; i0 += BQ) {
          const int64_t i1 = std::min(T, i0 + BQ);
          const int64_t R = (i1 - i0) * G;
          for (int64_t i = i0; i < i1; ++i) {
            const float* qs = q + qrow(i);
            float* dst = Qs + (i - i0) * G * hk;
            for (int64_t c = 0; c < G * hk; ++c) dst[c] = qs[c] * scale;
            std::memcpy(dOs + (i - i0) * G * hv, dout + orow(i), sizeof(float) * G * hv);
            for (int64_t g = 0; g < G; ++g) dqrow[(i - i0) * G + g] = dq + qrow(i) + g * hk;
          }
          scores_t(Prow, R, Qs, Kt, hk, kn);
          scores_t(dSrow, R, dOs, Vt, hv, kn);
          for (int64_t r = 0; r < R; ++r) {
            const int64_t n = std::clamp<int64_t>(i0 + r / G - j0 + 1, 0, kn);
            const int64_t j1 = window > 0 ? std::clamp<int64_t>(i0 + r / G - window + 1 - j0, 0, n) : 0;
            float* p = P + r * kBK;
            float* ds = dS + r * kBK;
            const float L = Lr[i0 * G + r], Dv = Dr[i0 * G + r];
            for (int64_t j = 0; j < j1; ++j) p[j] = ds[j] = 0.0f;
#pragma omp simd
            for (int64_t j = j1; j < n; ++j) {
              const float pj = exp_nonpos(p[j] - L);
              p[j] = pj;
              ds[j] = pj * (ds[j] - Dv);
            }
            for (int64_t j = n; j < kn; ++j) p[j] = ds[j] = 0.0f;
          }
          tile_acc<HK>(dqrow, R, dS, kBK, 1, kb + j0 * ks, ks, kn, hk);  // dQ += dS K (scaled at the end)
          tile_acc<HV>(dVrow, kn, P, 1, kBK, dOs, hv, R, hv);            // dV += P^T dO
          tile_acc<HK>(dKrow, kn, dS, 1, kBK, Qs, hk, R, hk);            // dK += dS^T (scale Q)
        }
        for (int64_t j = 0; j < kn; ++j) {
          std::memcpy(dk + (b * T + j0 + j) * ks + kvh * hk, dKs + j * hk, sizeof(float) * hk);
          std::memcpy(dv + (b * T + j0 + j) * vs + kvh * hv, dVs + j * hv, sizeof(float) * hv);
        }
      }
      for (int64_t i = 0; i < T; ++i) {
        float* d = dq + qrow(i);
        for (int64_t c = 0; c < G * hk; ++c) d[c] *= scale;
      }
    }
  }
}

void check_shapes(const char* what, int64_t B, int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hkv, int64_t hd_qk,
                  int64_t hd_v, float scale) {
  STRATA_CHECK(B >= 0 && Tq >= 0 && Tk >= Tq, "{}: need 0 <= Tq <= Tk (B={}, Tq={}, Tk={})", what, B, Tq, Tk);
  STRATA_CHECK(Hq > 0 && Hkv > 0 && Hq % Hkv == 0, "{}: kv heads ({}) must divide query heads ({})", what, Hkv, Hq);
  STRATA_CHECK(hd_qk > 0 && hd_v > 0, "{}: head dims must be positive (got qk {}, v {})", what, hd_qk, hd_v);
  STRATA_CHECK(std::isfinite(scale) && scale > 0, "{}: softmax scale must be positive and finite (got {})", what,
               scale);
}

// The head dims with a specialised kernel: equal qk and v dims of 16..128. Others (MLA's 192/128
// or the latent 576/512) take the run-time path, whose wide products are 64-column panels anyway.
template <class F>
void dispatch_dims(int64_t hk, int64_t hv, F&& f) {
  if (hk == hv) switch (hk) {
      case 16: return f.template operator()<16, 16>();
      case 32: return f.template operator()<32, 32>();
      case 64: return f.template operator()<64, 64>();
      case 128: return f.template operator()<128, 128>();
      default: break;
    }
  f.template operator()<0, 0>();
}

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B,
                       int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hkv, int64_t hd_qk, int64_t hd_v, float scale,
                       int64_t k_bstride, int64_t k_tstride, int64_t v_bstride, int64_t v_tstride, int64_t window) {
  check_shapes("attention_forward", B, Tq, Tk, Hq, Hkv, hd_qk, hd_v, scale);
  STRATA_CHECK(window >= 0, "attention_forward: window must be >= 0 (0 = full causal; got {})", window);
  STRATA_CHECK(k_tstride >= Hkv * hd_qk && v_tstride >= Hkv * hd_v,
               "attention_forward: token strides k {} / v {} below Hkv*hd_qk = {} / Hkv*hd_v = {}", k_tstride,
               v_tstride, Hkv * hd_qk, Hkv * hd_v);
  STRATA_CHECK(B <= 1 || (k_bstride >= Tk * k_tstride && v_bstride >= Tk * v_tstride),
               "attention_forward: batch strides k {} / v {} below Tk*tstride = {} / {}", k_bstride, v_bstride,
               Tk * k_tstride, Tk * v_tstride);
  if (B == 0 || Tq == 0) return;
  dispatch_dims(hd_qk, hd_v, [&]<int HK, int HV>() {
    forward_impl<HK, HV>(out, lse, q, k, v, B, Tq, Tk, Hq, Hkv, hd_qk, hd_v, scale, k_bstride, k_tstride, v_bstride,
                         v_tstride, window);
  });
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, int64_t B, int64_t T, int64_t Hq,
                        int64_t Hkv, int64_t hd_qk, int64_t hd_v, float scale, int64_t window) {
  check_shapes("attention_backward", B, T, T, Hq, Hkv, hd_qk, hd_v, scale);
  STRATA_CHECK(window >= 0, "attention_backward: window must be >= 0 (0 = full causal; got {})", window);
  if (B == 0 || T == 0) return;
  dispatch_dims(hd_qk, hd_v, [&]<int HK, int HV>() {
    backward_impl<HK, HV>(dq, dk, dv, dout, q, k, v, out, lse, B, T, Hq, Hkv, hd_qk, hd_v, scale, window);
  });
}

}  // namespace strata::cpu
