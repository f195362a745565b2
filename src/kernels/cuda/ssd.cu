// CUDA twin of kernels/cpu/ssd.cpp: Mamba-2 state-space duality, chunked (Dao & Gu 2024), with the
// kernel split of mamba_ssm's Triton implementation (ssd_combined.py):
//   dt / cumsum      dt = softplus(dt_raw + bias), cum = inclusive sum of dt A inside each chunk
//   C B^T            CB[i, j] = C_i . B_j per (chunk, group)                      (bmm_chunk)
//   chunk states     st[p, n] = sum_j e^{cum_last - cum_j} dt_j x_j[p] B_j[n]      (chunk_state)
//   state passing    S_in(c+1) = e^{cum_last(c)} S_in(c) + st(c), sequential over chunks
//   chunk scan       y_i = e^{cum_i} C_i . S_in + sum_{j<=i} CB_ij e^{cum_i - cum_j} dt_j x_j + D x_i
// Every product is a 64 x 64 block tile of tile::Mma (fp32, registers), whose operand loaders fold in
// the decay masks and scales, so no L x L decay matrix is ever materialised.
//
// Backward (formulas in the CPU twin's chunk_backward, regrouped per kernel): the forward's
// dt / cum, CB and S_in are recomputed (nothing is saved); then
//   dstates          Z[p, n] = sum_i e^{cum_i} dy_i[p] C_i[n];  dS_out(c-1) = e^{cum_last(c)} dS_out(c) + Z(c)
//   dx               W_j = sum_{i>=j} CB_ij e^{cum_i - cum_j} dy_i + q_j dS_out B_j  (q_j = e^{cum_last - cum_j}),
//                    dx_j = dt_j W_j + D dy_j,  and the row sums x_j . W_j, q_j x_j . (dS_out B_j)
//   dCB              dCB_ij = sum_{h in group} (dy_i . x_j) e^{cum_i - cum_j} dt_j           (i >= j)
//   dB, dC           dB_j = sum_i dCB_ij C_i + sum_h q_j dt_j x_j^T dS_out;
//                    dC_i = sum_j dCB_ij B_j + sum_h e^{cum_i} dy_i^T S_in
//   dcum -> ddt_raw  dcum_i = dy_i . (y_i - D x_i) - dt_i x_i . W_i  (+ the chunk's last row: the state
//                    passed on), da = suffix sums of dcum, ddt = x . W + A da, through the softplus.
// All sums run in a fixed order (blocks own disjoint outputs; row sums reduce through shared memory in
// order), so results are bit-reproducible.
#include "kernels/cuda/ssd.h"

#include <algorithm>

#include "core/error.h"
#include "kernels/cuda/runtime.h"
#include "kernels/cuda/scratch.cuh"
#include "kernels/cuda/ssm_math.cuh"
#include "kernels/cuda/tile_mma.cuh"

namespace strata::cuda {
namespace {

using ssm_math::sigmoid;
using ssm_math::softplus;
using Mma = tile::Mma64;
constexpr int kTile = 64;  // rows and columns of a block tile (Mma64)

struct Dims {
  int64_t B, T, H, P, G, N, Q;
  int64_t hpg;  // heads per group
  int64_t nc;   // chunks
  // Element offsets in the model-facing layouts.
  __host__ __device__ int64_t x_at(int64_t b, int64_t t, int64_t h, int64_t p) const { return ((b * T + t) * H + h) * P + p; }
  __host__ __device__ int64_t bc_at(int64_t b, int64_t t, int64_t g, int64_t n) const { return ((b * T + t) * G + g) * N + n; }
  // ... and in the scratch layouts: per-(b, h) token rows [B][H][T]; chunk matrices [B][nc][G][Q][Q];
  // chunk states [B][nc][H][P][N].
  __host__ __device__ int64_t ht_at(int64_t b, int64_t h, int64_t t) const { return (b * H + h) * T + t; }
  __host__ __device__ int64_t qq_at(int64_t b, int64_t c, int64_t g) const { return ((b * nc + c) * G + g) * Q * Q; }
  __host__ __device__ int64_t st_at(int64_t b, int64_t c, int64_t h) const { return ((b * nc + c) * H + h) * P * N; }
  __host__ __device__ int64_t len(int64_t c) const { return T - c * Q < Q ? T - c * Q : Q; }
};

Dims make_dims(int64_t B, int64_t T, int64_t H, int64_t P, int64_t G, int64_t N, int64_t chunk, const char* op) {
  STRATA_CHECK(B >= 0 && T >= 0 && H > 0 && P > 0 && G > 0 && N > 0 && chunk > 0,
               "{}: bad shape B={} T={} H={} P={} G={} N={} chunk={}", op, B, T, H, P, G, N, chunk);
  STRATA_CHECK(H % G == 0, "{}: heads ({}) must be a multiple of groups ({})", op, H, G);
  Dims d{B, T, H, P, G, N, std::min(chunk, std::max<int64_t>(T, 1)), H / G, 0};
  d.nc = (T + d.Q - 1) / d.Q;
  return d;
}

inline unsigned tiles(int64_t n) { return unsigned((n + kTile - 1) / kTile); }

// dt[b, h, t] and cum[b, h, t] (restarting at every chunk). One thread per (b, chunk, h), h fastest so
// the reads of dt_raw[b, t, :] coalesce.
__global__ void ssd_dt_kernel(float* dt, float* cum, const float* dt_raw, const float* dt_bias, const float* A,
                              Dims d) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= d.B * d.nc * d.H) return;
  const int64_t h = i % d.H, c = (i / d.H) % d.nc, b = i / (d.H * d.nc);
  const int64_t t0 = c * d.Q, L = d.len(c);
  const float bias = dt_bias ? dt_bias[h] : 0.0f, a = A[h];
  float acc = 0.0f;
  for (int64_t t = t0; t < t0 + L; ++t) {
    const float v = softplus(dt_raw[(b * d.T + t) * d.H + h] + bias);
    dt[d.ht_at(b, h, t)] = v;
    acc = fmaf(v, a, acc);
    cum[d.ht_at(b, h, t)] = acc;
  }
}

// CB[i, j] = C_i . B_j for j <= i (tiles wholly above the diagonal are skipped: never read).
// Grid (B * nc * G, row tiles, column tiles).
__global__ void __launch_bounds__(Mma::kThreads) ssd_cb_kernel(float* CB, const float* Cm, const float* Bm, Dims d) {
  STRATA_SHARED(float, smem, [Mma::kSmemFloats]);
  const int64_t z = blockIdx.x, g = z % d.G, c = (z / d.G) % d.nc, b = z / (d.G * d.nc);
  const int64_t t0 = c * d.Q, L = d.len(c), i0 = int64_t(blockIdx.y) * kTile, j0 = int64_t(blockIdx.z) * kTile;
  if (i0 >= L || j0 >= L || j0 > i0 + kTile - 1) return;
  Mma mm;
  mm.run<false, false>(
      smem, 0, int(d.N), [&](int m, int n) { return i0 + m < L ? Cm[d.bc_at(b, t0 + i0 + m, g, n)] : 0.0f; },
      [&](int n, int col) { return j0 + col < L ? Bm[d.bc_at(b, t0 + j0 + col, g, n)] : 0.0f; });
  float* out = CB + d.qq_at(b, c, g);
#pragma unroll
  for (int ii = 0; ii < 4; ++ii)
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      const int64_t i = i0 + mm.row(ii), j = j0 + mm.col(jj);
      if (i < L && j < L) out[i * d.Q + j] = mm.acc[ii][jj];
    }
}

// Per-chunk outer-product sums out[b, c, h][p, n] = sum_j w_j X[b, t0+j, h, p] Y[b, t0+j, g, n]:
//   kDecayToEnd: w_j = e^{cum_last - cum_j} dt_j, X = x, Y = B   (the chunk's own state, from zero)
//   else:        w_j = e^{cum_j},                 X = dy, Y = C  (its gradient w.r.t. the entering state)
// Grid (B * nc * H, P tiles, N tiles).
template <bool kDecayToEnd>
__global__ void __launch_bounds__(Mma::kThreads) ssd_chunk_state_kernel(float* out, const float* X, const float* Y,
                                                                        const float* dt, const float* cum, Dims d) {
  STRATA_SHARED(float, smem, [Mma::kSmemFloats]);
  const int64_t z = blockIdx.x, h = z % d.H, c = (z / d.H) % d.nc, b = z / (d.H * d.nc), g = h / d.hpg;
  const int64_t t0 = c * d.Q, L = d.len(c), p0 = int64_t(blockIdx.y) * kTile, n0 = int64_t(blockIdx.z) * kTile;
  const float* ch = cum + d.ht_at(b, h, t0);
  const float* dh = dt + d.ht_at(b, h, t0);
  const float cl = ch[L - 1];
  Mma mm;
  mm.run<true, true>(
      smem, 0, int(L),
      [&](int m, int j) {
        if (p0 + m >= d.P) return 0.0f;
        const float w = kDecayToEnd ? expf(cl - ch[j]) * dh[j] : expf(ch[j]);
        return w * X[d.x_at(b, t0 + j, h, p0 + m)];
      },
      [&](int j, int col) { return n0 + col < d.N ? Y[d.bc_at(b, t0 + j, g, n0 + col)] : 0.0f; });
  float* o = out + d.st_at(b, c, h);
#pragma unroll
  for (int ii = 0; ii < 4; ++ii)
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      const int64_t p = p0 + mm.row(ii), n = n0 + mm.col(jj);
      if (p < d.P && n < d.N) o[p * d.N + n] = mm.acc[ii][jj];
    }
}

// Forward state passing, in place: st(c) (the chunk's own state) becomes S_in(c), the state entering
// chunk c; s_last gets the final state. One thread per (b, h, p, n), sequential over chunks.
__global__ void ssd_state_pass_kernel(float* st, float* s_last, const float* s0, const float* cum, Dims d) {
  const int64_t PN = d.P * d.N, i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= d.B * d.H * PN) return;
  const int64_t pn = i % PN, bh = i / PN, h = bh % d.H, b = bh / d.H;
  float S = s0 ? s0[i] : 0.0f;
  for (int64_t c = 0; c < d.nc; ++c) {
    float* o = st + d.st_at(b, c, h) + pn;
    const float own = *o;
    *o = S;
    if (c + 1 < d.nc || s_last) S = fmaf(expf(cum[d.ht_at(b, h, c * d.Q + d.len(c) - 1)]), S, own);
  }
  if (s_last) s_last[i] = S;
}

// Backward state passing, in place: Z(c) becomes dS_out(c) = dL/d(state leaving chunk c).
__global__ void ssd_state_pass_bwd_kernel(float* Z, const float* cum, Dims d) {
  const int64_t PN = d.P * d.N, i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= d.B * d.H * PN) return;
  const int64_t pn = i % PN, bh = i / PN, h = bh % d.H, b = bh / d.H;
  float dS = 0.0f;
  for (int64_t c = d.nc - 1; c >= 0; --c) {
    float* o = Z + d.st_at(b, c, h) + pn;
    const float own = *o;
    *o = dS;
    dS = fmaf(expf(cum[d.ht_at(b, h, c * d.Q + d.len(c) - 1)]), dS, own);
  }
}

// Sum over the threads of a block in a fixed tree (blockDim.x a power of two, <= 1024); the result is
// valid in thread 0.
__device__ float block_sum(float v, float* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int s = int(blockDim.x) / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  return red[0];
}

// last[b, h, c] = e^{cum_last} <dS_out(c), S_in(c)>: the state passed on, through the chunk's decay.
// One block of 256 per (b, c, h).
__global__ void ssd_state_dot_kernel(float* last, const float* dS, const float* S_in, const float* cum, Dims d) {
  STRATA_SHARED(float, red, [256]);
  const int64_t z = blockIdx.x, h = z % d.H, c = (z / d.H) % d.nc, b = z / (d.H * d.nc);
  const int64_t PN = d.P * d.N, o = d.st_at(b, c, h);
  float s = 0.0f;
  for (int64_t k = threadIdx.x; k < PN; k += blockDim.x) s = fmaf(dS[o + k], S_in[o + k], s);
  s = block_sum(s, red);
  if (threadIdx.x == 0) last[(b * d.H + h) * d.nc + c] = expf(cum[d.ht_at(b, h, c * d.Q + d.len(c) - 1)]) * s;
}

// Adds the block's per-row partials rows[ii] (rows mm.row(ii), one partial per column thread) in a
// fixed order; returns, in the threads with tx == 0, the row totals. smem: Mma::kSmemFloats floats.
template <int N_OUT>
__device__ void row_totals(float (&v)[N_OUT][4], float* smem, const Mma& mm) {
  static_assert(N_OUT * kTile * Mma::kColThreads <= Mma::kSmemFloats, "row sums must fit the staging memory");
  __syncthreads();  // smem may still be read by the last tile stage
#pragma unroll
  for (int q = 0; q < N_OUT; ++q)
#pragma unroll
    for (int ii = 0; ii < 4; ++ii) smem[(q * kTile + mm.row(ii)) * Mma::kColThreads + mm.tx] = v[q][ii];
  __syncthreads();
  if (mm.tx == 0) {
#pragma unroll
    for (int q = 0; q < N_OUT; ++q)
#pragma unroll
      for (int ii = 0; ii < 4; ++ii) {
        float s = 0.0f;
        for (int k = 0; k < Mma::kColThreads; ++k) s += smem[(q * kTile + mm.row(ii)) * Mma::kColThreads + k];
        v[q][ii] = s;
      }
  }
}

// Chunk scan. Forward (kDot = false): y_i = e^{cum_i} C_i . S_in + sum_{j<=i} CB_ij e^{cum_i - cum_j} dt_j x_j
// + D x_i; grid (B * nc * H, row tiles, P tiles). Backward helper (kDot = true): the same y without
// the D term is dotted with dy instead of stored: r_i = dy_i . (y_i - D x_i), and sdx_i = dy_i . x_i;
// grid (B * nc * H, row tiles, 1), the block walking every P tile so that the row sums stay in it.
template <bool kDot>
__global__ void __launch_bounds__(Mma::kThreads)
    ssd_chunk_scan_kernel(float* y, float* r, float* sdx, const float* x, const float* dy, const float* Cm,
                          const float* CB, const float* S_in, const float* dt, const float* cum, const float* Dskip,
                          Dims d) {
  STRATA_SHARED(float, smem, [Mma::kSmemFloats]);
  const int64_t z = blockIdx.x, h = z % d.H, c = (z / d.H) % d.nc, b = z / (d.H * d.nc), g = h / d.hpg;
  const int64_t t0 = c * d.Q, L = d.len(c), i0 = int64_t(blockIdx.y) * kTile;
  if (i0 >= L) return;
  const float* ch = cum + d.ht_at(b, h, t0);
  const float* dh = dt + d.ht_at(b, h, t0);
  const float* cb = CB + d.qq_at(b, c, g);
  const float* S = S_in + d.st_at(b, c, h);
  const float Dh = Dskip ? Dskip[h] : 0.0f;
  const int jend = int(std::min<int64_t>(L, i0 + kTile));  // intra-chunk columns j <= i < i0 + kTile
  Mma mm;
  float sums[2][4] = {};  // kDot: dy . y, dy . x per owned row
  for (int64_t p0 = int64_t(blockIdx.z) * kTile; p0 < d.P; p0 += int64_t(gridDim.z) * kTile) {
    mm.zero();
    // State read: C_i . S_in[p, :], then the decay of the state into row i.
    mm.run<false, false>(
        smem, 0, int(d.N), [&](int m, int n) { return i0 + m < L ? Cm[d.bc_at(b, t0 + i0 + m, g, n)] : 0.0f; },
        [&](int n, int col) { return p0 + col < d.P ? S[(p0 + col) * d.N + n] : 0.0f; });
#pragma unroll
    for (int ii = 0; ii < 4; ++ii) {
      const int64_t i = i0 + mm.row(ii);
      const float e = i < L ? expf(ch[i]) : 0.0f;
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) mm.acc[ii][jj] *= e;
    }
    // Intra-chunk: the decay-masked (C B^T) times dt x.
    mm.run<false, true>(
        smem, 0, jend,
        [&](int m, int j) {
          const int64_t i = i0 + m;
          return i < L && j <= i ? cb[i * d.Q + j] * expf(ch[i] - ch[j]) * dh[j] : 0.0f;
        },
        [&](int j, int col) { return p0 + col < d.P ? x[d.x_at(b, t0 + j, h, p0 + col)] : 0.0f; });
#pragma unroll
    for (int ii = 0; ii < 4; ++ii) {
      const int64_t i = i0 + mm.row(ii);
      if (i >= L) continue;
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) {
        const int64_t p = p0 + mm.col(jj);
        if (p >= d.P) continue;
        const int64_t o = d.x_at(b, t0 + i, h, p);
        if constexpr (kDot) {
          sums[0][ii] = fmaf(dy[o], mm.acc[ii][jj], sums[0][ii]);
          sums[1][ii] = fmaf(dy[o], x[o], sums[1][ii]);
        } else {
          y[o] = fmaf(Dh, x[o], mm.acc[ii][jj]);
        }
      }
    }
  }
  if constexpr (kDot) {
    row_totals<2>(sums, smem, mm);
    if (mm.tx == 0)
#pragma unroll
      for (int ii = 0; ii < 4; ++ii) {
        const int64_t i = i0 + mm.row(ii);
        if (i < L) {
          r[d.ht_at(b, h, t0 + i)] = sums[0][ii];
          sdx[d.ht_at(b, h, t0 + i)] = sums[1][ii];
        }
      }
  }
}

// dx and the row sums xw_j = x_j . W_j, zq_j = q_j x_j . (dS_out B_j) (see the file comment).
// Grid (B * nc * H, row tiles of j, 1); the block walks every P tile.
__global__ void __launch_bounds__(Mma::kThreads)
    ssd_dx_kernel(float* dx, float* xw, float* zq, const float* x, const float* dy, const float* Bm, const float* CB,
                  const float* dS, const float* dt, const float* cum, const float* Dskip, Dims d) {
  STRATA_SHARED(float, smem, [Mma::kSmemFloats]);
  const int64_t z = blockIdx.x, h = z % d.H, c = (z / d.H) % d.nc, b = z / (d.H * d.nc), g = h / d.hpg;
  const int64_t t0 = c * d.Q, L = d.len(c), j0 = int64_t(blockIdx.y) * kTile;
  if (j0 >= L) return;
  const float* ch = cum + d.ht_at(b, h, t0);
  const float* dh = dt + d.ht_at(b, h, t0);
  const float* cb = CB + d.qq_at(b, c, g);
  const float* dSo = dS + d.st_at(b, c, h);
  const float Dh = Dskip ? Dskip[h] : 0.0f, cl = ch[L - 1];
  Mma mm;
  float sums[2][4] = {};  // x . W, x . (q v)
  for (int64_t p0 = 0; p0 < d.P; p0 += kTile) {
    mm.zero();
    // v_j[p] = sum_n B_j[n] dS_out[p, n], scaled by q_j.
    mm.run<false, false>(
        smem, 0, int(d.N), [&](int m, int n) { return j0 + m < L ? Bm[d.bc_at(b, t0 + j0 + m, g, n)] : 0.0f; },
        [&](int n, int col) { return p0 + col < d.P ? dSo[(p0 + col) * d.N + n] : 0.0f; });
#pragma unroll
    for (int ii = 0; ii < 4; ++ii) {
      const int64_t j = j0 + mm.row(ii);
      const float q = j < L ? expf(cl - ch[j]) : 0.0f;
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) {
        mm.acc[ii][jj] *= q;
        const int64_t p = p0 + mm.col(jj);
        if (j < L && p < d.P) sums[1][ii] = fmaf(x[d.x_at(b, t0 + j, h, p)], mm.acc[ii][jj], sums[1][ii]);
      }
    }
    // + sum_{i>=j} CB_ij e^{cum_i - cum_j} dy_i  (A is read transposed: row j of the tile is column j of CB).
    mm.run<true, true>(
        smem, int(j0), int(L),
        [&](int m, int i) {
          const int64_t j = j0 + m;
          return j < L && i >= j ? cb[int64_t(i) * d.Q + j] * expf(ch[i] - ch[j]) : 0.0f;
        },
        [&](int i, int col) { return p0 + col < d.P ? dy[d.x_at(b, t0 + i, h, p0 + col)] : 0.0f; });
#pragma unroll
    for (int ii = 0; ii < 4; ++ii) {
      const int64_t j = j0 + mm.row(ii);
      if (j >= L) continue;
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) {
        const int64_t p = p0 + mm.col(jj);
        if (p >= d.P) continue;
        const int64_t o = d.x_at(b, t0 + j, h, p);
        const float w = mm.acc[ii][jj];
        dx[o] = fmaf(dh[j], w, Dh * dy[o]);
        sums[0][ii] = fmaf(x[o], w, sums[0][ii]);
      }
    }
  }
  row_totals<2>(sums, smem, mm);
  if (mm.tx == 0)
#pragma unroll
    for (int ii = 0; ii < 4; ++ii) {
      const int64_t j = j0 + mm.row(ii);
      if (j < L) {
        xw[d.ht_at(b, h, t0 + j)] = sums[0][ii];
        zq[d.ht_at(b, h, t0 + j)] = sums[1][ii];
      }
    }
}

// dCB[i, j] = sum over the group's heads of (dy_i . x_j) e^{cum_i - cum_j} dt_j for j <= i (0 above).
// Grid (B * nc * G, row tiles, column tiles); tiles wholly above the diagonal are skipped (never read).
__global__ void __launch_bounds__(Mma::kThreads)
    ssd_dcb_kernel(float* dCB, const float* x, const float* dy, const float* dt, const float* cum, Dims d) {
  STRATA_SHARED(float, smem, [Mma::kSmemFloats]);
  const int64_t z = blockIdx.x, g = z % d.G, c = (z / d.G) % d.nc, b = z / (d.G * d.nc);
  const int64_t t0 = c * d.Q, L = d.len(c), i0 = int64_t(blockIdx.y) * kTile, j0 = int64_t(blockIdx.z) * kTile;
  if (i0 >= L || j0 >= L || j0 > i0 + kTile - 1) return;
  float tot[4][4] = {};
  Mma mm;
  for (int64_t h = g * d.hpg; h < (g + 1) * d.hpg; ++h) {
    mm.zero();
    mm.run<false, false>(
        smem, 0, int(d.P), [&](int m, int p) { return i0 + m < L ? dy[d.x_at(b, t0 + i0 + m, h, p)] : 0.0f; },
        [&](int p, int col) { return j0 + col < L ? x[d.x_at(b, t0 + j0 + col, h, p)] : 0.0f; });
    const float* ch = cum + d.ht_at(b, h, t0);
    const float* dh = dt + d.ht_at(b, h, t0);
#pragma unroll
    for (int ii = 0; ii < 4; ++ii)
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) {
        const int64_t i = i0 + mm.row(ii), j = j0 + mm.col(jj);
        if (i < L && j <= i) tot[ii][jj] = fmaf(mm.acc[ii][jj], expf(ch[i] - ch[j]) * dh[j], tot[ii][jj]);
      }
  }
  float* out = dCB + d.qq_at(b, c, g);
#pragma unroll
  for (int ii = 0; ii < 4; ++ii)
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      const int64_t i = i0 + mm.row(ii), j = j0 + mm.col(jj);
      if (i < L && j < L) out[i * d.Q + j] = tot[ii][jj];
    }
}

// dB (kC = false, rows j) or dC (kC = true, rows i) of one chunk and group, assigned:
//   dB_j = sum_{i>=j} dCB_ij C_i + sum_{h, p} q_j dt_j x_j[p] dS_out[p, :]
//   dC_i = sum_{j<=i} dCB_ij B_j + sum_{h, p} e^{cum_i} dy_i[p] S_in[p, :]
// Grid (B * nc * G, row tiles, N tiles).
template <bool kC>
__global__ void __launch_bounds__(Mma::kThreads)
    ssd_dbc_kernel(float* out, const float* dCB, const float* BCo, const float* XY, const float* S, const float* dt,
                   const float* cum, Dims d) {
  STRATA_SHARED(float, smem, [Mma::kSmemFloats]);
  const int64_t z = blockIdx.x, g = z % d.G, c = (z / d.G) % d.nc, b = z / (d.G * d.nc);
  const int64_t t0 = c * d.Q, L = d.len(c), r0 = int64_t(blockIdx.y) * kTile, n0 = int64_t(blockIdx.z) * kTile;
  if (r0 >= L) return;
  const float* dcb = dCB + d.qq_at(b, c, g);
  Mma mm;
  auto other = [&](int k, int col) { return n0 + col < d.N ? BCo[d.bc_at(b, t0 + k, g, n0 + col)] : 0.0f; };
  if constexpr (kC) {
    mm.run<false, true>(
        smem, 0, int(std::min<int64_t>(L, r0 + kTile)),
        [&](int m, int j) {
          const int64_t i = r0 + m;
          return i < L && j <= i ? dcb[i * d.Q + j] : 0.0f;
        },
        other);
  } else {
    mm.run<true, true>(
        smem, int(r0), int(L),
        [&](int m, int i) {
          const int64_t j = r0 + m;
          return j < L && i >= j ? dcb[int64_t(i) * d.Q + j] : 0.0f;
        },
        other);
  }
  for (int64_t h = g * d.hpg; h < (g + 1) * d.hpg; ++h) {
    const float* ch = cum + d.ht_at(b, h, t0);
    const float* dh = dt + d.ht_at(b, h, t0);
    const float* Sh = S + d.st_at(b, c, h);
    const float cl = ch[L - 1];
    mm.run<false, true>(
        smem, 0, int(d.P),
        [&](int m, int p) {
          const int64_t t = r0 + m;
          if (t >= L) return 0.0f;
          const float w = kC ? expf(ch[t]) : expf(cl - ch[t]) * dh[t];
          return w * XY[d.x_at(b, t0 + t, h, p)];
        },
        [&](int p, int col) { return n0 + col < d.N ? Sh[int64_t(p) * d.N + n0 + col] : 0.0f; });
  }
#pragma unroll
  for (int ii = 0; ii < 4; ++ii)
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      const int64_t t = r0 + mm.row(ii), n = n0 + mm.col(jj);
      if (t < L && n < d.N) out[d.bc_at(b, t0 + t, g, n)] = mm.acc[ii][jj];
    }
}

// Per (b, chunk, h): dcum, its suffix sums da, ddt_raw (assigned) and this chunk's shares of dA, dDskip
// and ddt_bias (part[b, h, c][3], in double).
__global__ void ssd_dcum_kernel(float* ddt_raw, double* part, const float* r, const float* sdx, const float* xw,
                                const float* zq, const float* last, const float* dt, const float* dt_raw,
                                const float* dt_bias, const float* A, Dims d) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= d.B * d.nc * d.H) return;
  const int64_t h = i % d.H, c = (i / d.H) % d.nc, b = i / (d.H * d.nc);
  const int64_t t0 = c * d.Q, L = d.len(c), base = d.ht_at(b, h, t0);
  const float bias = dt_bias ? dt_bias[h] : 0.0f, a = A[h];
  // The state passed on moves cum_last up by everything it carries.
  float extra = last[(b * d.H + h) * d.nc + c];
  for (int64_t j = 0; j < L; ++j) extra = fmaf(dt[base + j], zq[base + j], extra);
  float da = 0.0f;
  double sA = 0.0, sD = 0.0, sb = 0.0;
  for (int64_t t = L - 1; t >= 0; --t) {
    const float dtv = dt[base + t];
    float dc = r[base + t] - dtv * xw[base + t];
    if (t == L - 1) dc += extra;
    da += dc;
    sA += double(dtv) * double(da);
    const int64_t o = (b * d.T + t0 + t) * d.H + h;
    const float g = fmaf(a, da, xw[base + t]) * sigmoid(dt_raw[o] + bias);
    ddt_raw[o] = g;
    sb += double(g);
    sD += double(sdx[base + t]);
  }
  double* pp = part + ((b * d.H + h) * d.nc + c) * 3;
  pp[0] = sA;
  pp[1] = sD;
  pp[2] = sb;
}

// dA[h], dDskip[h], ddt_bias[h] += the partials over (b, c), in order.
__global__ void ssd_head_reduce_kernel(float* dA, float* dDskip, float* ddt_bias, const double* part, Dims d) {
  const int64_t h = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (h >= d.H) return;
  double s[3] = {0.0, 0.0, 0.0};
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t c = 0; c < d.nc; ++c)
      for (int k = 0; k < 3; ++k) s[k] += part[((b * d.H + h) * d.nc + c) * 3 + k];
  dA[h] += float(s[0]);
  if (dDskip) dDskip[h] += float(s[1]);
  if (ddt_bias) ddt_bias[h] += float(s[2]);
}

// One token: a warp per (b, h, p) row of the state, lanes over n.
__global__ void ssd_step_kernel(float* y, float* state, const float* x, const float* dt_raw, const float* dt_bias,
                                const float* A, const float* Bm, const float* Cm, const float* Dskip, int64_t B,
                                int64_t H, int64_t P, int64_t G, int64_t N) {
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = int(threadIdx.x) % 32;
  if (row >= B * H * P) return;  // whole warps leave together: rows are per warp
  const int64_t p = row % P, bh = row / P, h = bh % H, b = bh / H, g = h / (H / G);
  const float dt = softplus(dt_raw[bh] + (dt_bias ? dt_bias[h] : 0.0f));
  const float a = expf(dt * A[h]);
  const float xv = x[bh * P + p], dxv = dt * xv;
  const float* Bv = Bm + (b * G + g) * N;
  const float* Cv = Cm + (b * G + g) * N;
  float* s = state + row * N;
  float acc = 0.0f;
  for (int64_t n = lane; n < N; n += 32) {
    const float v = fmaf(a, s[n], dxv * Bv[n]);
    s[n] = v;
    acc = fmaf(v, Cv[n], acc);
  }
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (lane == 0) y[bh * P + p] = fmaf(Dskip ? Dskip[h] : 0.0f, xv, acc);
}

inline unsigned blocks_1d(int64_t n, int threads) { return unsigned((n + threads - 1) / threads); }

// Forward intermediates shared by both passes: dt / cum, CB, and S_in per chunk (st).
struct Forward {
  Scratch<float> dt, cum, CB, st;
  explicit Forward(const Dims& d)
      : dt(d.B * d.H * d.T), cum(d.B * d.H * d.T), CB(d.B * d.nc * d.G * d.Q * d.Q), st(d.B * d.nc * d.H * d.P * d.N) {}
};

// dt / cum, CB, the chunks' own states, and state passing (st becomes S_in per chunk).
void run_forward_prefix(Forward& f, const Dims& d, float* s_last, const float* s0, const float* x, const float* dt_raw,
                        const float* dt_bias, const float* A, const float* Bm, const float* Cm) {
  cudaStream_t st = current_stream();
  const int64_t bch = d.B * d.nc * d.H, bcg = d.B * d.nc * d.G;
  STRATA_LAUNCH((blocks_1d(bch, 128), 128, 0, st), ssd_dt_kernel)(f.dt.get(), f.cum.get(), dt_raw, dt_bias, A, d);
  CUDA_CHECK_LAUNCH();
  STRATA_LAUNCH((dim3(unsigned(bcg), tiles(d.Q), tiles(d.Q)), Mma::kThreads, 0, st), ssd_cb_kernel)(f.CB.get(), Cm, Bm, d);
  CUDA_CHECK_LAUNCH();
  STRATA_LAUNCH((dim3(unsigned(bch), tiles(d.P), tiles(d.N)), Mma::kThreads, 0, st), ssd_chunk_state_kernel<true>)(
      f.st.get(), x, Bm, f.dt.get(), f.cum.get(), d);
  CUDA_CHECK_LAUNCH();
  STRATA_LAUNCH((blocks_1d(d.B * d.H * d.P * d.N, 256), 256, 0, st), ssd_state_pass_kernel)(f.st.get(), s_last, s0, f.cum.get(),
                                                                               d);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void ssd_forward(float* y, float* s_last, const float* x, const float* dt_raw, const float* dt_bias, const float* A,
                 const float* Bm, const float* Cm, const float* Dskip, const float* s0, int64_t B, int64_t T, int64_t H,
                 int64_t P, int64_t G, int64_t N, int64_t chunk) {
  const Dims d = make_dims(B, T, H, P, G, N, chunk, "ssd_forward");
  if (B == 0) return;
  if (T == 0) {  // no tokens: the final state is the initial one
    if (s_last) {
      if (s0)
        copy_on_device(s_last, s0, sizeof(float) * size_t(B * H * P * N));
      else
        memset_zero(s_last, sizeof(float) * size_t(B * H * P * N));
    }
    return;
  }
  Forward f(d);
  run_forward_prefix(f, d, s_last, s0, x, dt_raw, dt_bias, A, Bm, Cm);
  STRATA_LAUNCH((dim3(unsigned(B * d.nc * H), tiles(d.Q), tiles(P)), Mma::kThreads, 0,
                                  current_stream()), ssd_chunk_scan_kernel<false>)(y, nullptr, nullptr, x, nullptr, Cm, f.CB.get(), f.st.get(),
                                                      f.dt.get(), f.cum.get(), Dskip, d);
  CUDA_CHECK_LAUNCH();
}

void ssd_backward(float* dx, float* ddt_raw, float* dA, float* dBm, float* dCm, float* dDskip, float* ddt_bias,
                  const float* dy, const float* x, const float* dt_raw, const float* dt_bias, const float* A,
                  const float* Bm, const float* Cm, const float* Dskip, int64_t B, int64_t T, int64_t H, int64_t P,
                  int64_t G, int64_t N, int64_t chunk) {
  const Dims d = make_dims(B, T, H, P, G, N, chunk, "ssd_backward");
  if (B * T == 0) return;  // no activations; the head grads receive nothing
  cudaStream_t st = current_stream();
  const int64_t bch = B * d.nc * H, bcg = B * d.nc * G, bht = B * H * T;
  Forward f(d);
  run_forward_prefix(f, d, nullptr, nullptr, x, dt_raw, dt_bias, A, Bm, Cm);

  // dS_out per chunk, and the dot that moves cum_last.
  Scratch<float> dS(B * d.nc * H * P * N), last(B * H * d.nc);
  STRATA_LAUNCH((dim3(unsigned(bch), tiles(P), tiles(N)), Mma::kThreads, 0, st), ssd_chunk_state_kernel<false>)(
      dS.get(), dy, Cm, f.dt.get(), f.cum.get(), d);
  CUDA_CHECK_LAUNCH();
  STRATA_LAUNCH((blocks_1d(B * H * P * N, 256), 256, 0, st), ssd_state_pass_bwd_kernel)(dS.get(), f.cum.get(), d);
  CUDA_CHECK_LAUNCH();
  STRATA_LAUNCH((unsigned(bch), 256, 0, st), ssd_state_dot_kernel)(last.get(), dS.get(), f.st.get(), f.cum.get(), d);
  CUDA_CHECK_LAUNCH();

  // Row sums r = dy . (y - D x), sdx = dy . x; then dx with xw, zq.
  Scratch<float> rows(4 * bht);
  float *r = rows.get(), *sdx = r + bht, *xw = sdx + bht, *zq = xw + bht;
  STRATA_LAUNCH((dim3(unsigned(bch), tiles(d.Q), 1), Mma::kThreads, 0, st), ssd_chunk_scan_kernel<true>)(
      nullptr, r, sdx, x, dy, Cm, f.CB.get(), f.st.get(), f.dt.get(), f.cum.get(), Dskip, d);
  CUDA_CHECK_LAUNCH();
  STRATA_LAUNCH((dim3(unsigned(bch), tiles(d.Q), 1), Mma::kThreads, 0, st), ssd_dx_kernel)(
      dx, xw, zq, x, dy, Bm, f.CB.get(), dS.get(), f.dt.get(), f.cum.get(), Dskip, d);
  CUDA_CHECK_LAUNCH();

  // dCB, then dB and dC (assigned).
  Scratch<float> dCB(B * d.nc * G * d.Q * d.Q);
  STRATA_LAUNCH((dim3(unsigned(bcg), tiles(d.Q), tiles(d.Q)), Mma::kThreads, 0, st), ssd_dcb_kernel)(dCB.get(), x, dy, f.dt.get(),
                                                                                       f.cum.get(), d);
  CUDA_CHECK_LAUNCH();
  STRATA_LAUNCH((dim3(unsigned(bcg), tiles(d.Q), tiles(N)), Mma::kThreads, 0, st), ssd_dbc_kernel<false>)(
      dBm, dCB.get(), Cm, x, dS.get(), f.dt.get(), f.cum.get(), d);
  CUDA_CHECK_LAUNCH();
  STRATA_LAUNCH((dim3(unsigned(bcg), tiles(d.Q), tiles(N)), Mma::kThreads, 0, st), ssd_dbc_kernel<true>)(
      dCm, dCB.get(), Bm, dy, f.st.get(), f.dt.get(), f.cum.get(), d);
  CUDA_CHECK_LAUNCH();

  // dcum -> ddt_raw and the per-head parameter sums.
  Scratch<double> part(bch * 3);
  STRATA_LAUNCH((blocks_1d(bch, 128), 128, 0, st), ssd_dcum_kernel)(ddt_raw, part.get(), r, sdx, xw, zq, last.get(), f.dt.get(),
                                                       dt_raw, dt_bias, A, d);
  CUDA_CHECK_LAUNCH();
  STRATA_LAUNCH((blocks_1d(H, 128), 128, 0, st), ssd_head_reduce_kernel)(dA, dDskip, ddt_bias, part.get(), d);
  CUDA_CHECK_LAUNCH();
}

void ssd_step(float* y, float* state, const float* x, const float* dt_raw, const float* dt_bias, const float* A,
              const float* Bm, const float* Cm, const float* Dskip, int64_t B, int64_t H, int64_t P, int64_t G,
              int64_t N) {
  STRATA_CHECK(H > 0 && G > 0 && H % G == 0, "ssd_step: heads ({}) must be a multiple of groups ({})", H, G);
  const int64_t rows = B * H * P;
  if (rows == 0) return;
  STRATA_LAUNCH((blocks_1d(rows * 32, 256), 256, 0, current_stream()), ssd_step_kernel)(y, state, x, dt_raw, dt_bias, A, Bm, Cm,
                                                                          Dskip, B, H, P, G, N);
  CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
