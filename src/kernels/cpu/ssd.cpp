// Mamba-2 state-space duality (SSD), chunked (Dao & Gu 2024; mamba_ssm ssd_minimal / ssd_combined).
//
// Per head, with dt_t = softplus(dt_raw_t + dt_bias), a_t = dt_t A and, inside a chunk of L steps,
// cum_i = a_0 + ... + a_i (inclusive), S_in[N, P] the state entering the chunk (transposed):
//   y_i   = sum_{j<=i} (C_i.B_j) e^{cum_i - cum_j} dt_j x_j  +  e^{cum_i} S_in^T C_i  +  D x_i
//   S_out = e^{cum_{L-1}} S_in + sum_j e^{cum_{L-1} - cum_j} dt_j B_j x_j^T
// The first term is a masked L x L matmul (intra-chunk), the second reads the passed state, the
// third passes it on. Every exponent is <= 0 because A < 0, so nothing overflows.
// The decays between two tokens, e^{cum_i - cum_j} and e^{cum_{L-1} - cum_j}, take their exponents
// from sums over just the tokens between (seg, tail below), not from differences of cum: cum can
// reach -100s inside a chunk (large dt A), and its rounding (~1e-5 there) would otherwise become the
// relative error of every later decay in the chunk, however short (e^{-0.001} read as e^{-0.001 +- 3e-5}).
//
// Work is split into tasks (batch, group, slice of the group's heads). The heads of a task share
// B and C, so their states are kept side by side, S[N, heads * P], and every state product (read,
// pass on, and their gradients) is one GEMM over all of them, whose output columns are exactly the
// heads' columns of a token row of x / y. Only the decay-masked L x L products are per head. All
// products go through cpu::gemm (oneDNN), which runs single-threaded inside our parallel region.
// The number of slices depends only on the shapes, so results do not depend on the thread count.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/scan_math.h"
#include "kernels/cpu/ssd.h"

namespace strata::cpu {
namespace {

using ssm_math::exp_nonpos;
using ssm_math::sigmoid;
using ssm_math::softplus;

// Rows of the masked L x L products are done in blocks: block [r0, r1) only needs columns [0, r1),
// which skips most of the zero upper triangle at the price of a few more, smaller GEMM calls.
constexpr int64_t kRowBlock = 32;

inline float dot(const float* __restrict a, const float* __restrict b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t k = 0; k < n; ++k) s += a[k] * b[k];
  return s;
}

struct Dims {
  int64_t B, T, H, P, G, N, Q;
  int64_t hpg;     // heads per group
  int64_t nc;      // chunks
  int64_t slices;  // tasks per (batch, group)
  int64_t max_heads;
  int64_t ld() const { return H * P; }  // row stride of x, y, dx, dy
  int64_t bs() const { return G * N; }  // row stride of Bm, Cm
};

Dims make_dims(int64_t B, int64_t T, int64_t H, int64_t P, int64_t G, int64_t N, int64_t chunk) {
  STRATA_CHECK(B >= 0 && T >= 0 && H > 0 && P > 0 && G > 0 && N > 0 && chunk > 0,
               "ssd: bad shape B={} T={} H={} P={} G={} N={} chunk={}", B, T, H, P, G, N, chunk);
  STRATA_CHECK(H % G == 0, "ssd: heads ({}) must be a multiple of groups ({})", H, G);
  Dims d{B, T, H, P, G, N, std::min(chunk, std::max<int64_t>(T, 1)), H / G, 0, 1, 0};
  d.nc = (T + d.Q - 1) / d.Q;
  // Enough tasks to keep a few cores busy when B * G is small (B = 1 prefill); each extra slice
  // costs one more C.B^T per chunk and narrower state GEMMs.
  d.slices = std::clamp<int64_t>((8 + B * G - 1) / std::max<int64_t>(B * G, 1), 1, d.hpg);
  d.max_heads = (d.hpg + d.slices - 1) / d.slices;
  return d;
}

// Heads [h0, h1) of task `task` = (b, g, s).
struct Task {
  int64_t b, g, s, h0, h1;
  int64_t heads() const { return h1 - h0; }
};
Task task_of(const Dims& d, int64_t task) {
  Task t;
  t.s = task % d.slices;
  t.g = (task / d.slices) % d.G;
  t.b = task / (d.slices * d.G);
  t.h0 = t.g * d.hpg + t.s * d.hpg / d.slices;
  t.h1 = t.g * d.hpg + (t.s + 1) * d.hpg / d.slices;
  return t;
}

// dt[t] = softplus(dt_raw + bias) and, restarting at every chunk, cum[t] = inclusive sum of dt A and
// tail[t] = the sum of dt A over the chunk's tokens after t (cum_{L-1} - cum_t, summed directly).
STRATA_CPU_CLONES
void head_dt(float* dt, float* cum, float* tail, const float* dt_raw, float bias, float A, const Dims& d, int64_t b,
             int64_t h) {
  const float* r = dt_raw + b * d.T * d.H + h;
  for (int64_t t = 0; t < d.T; ++t) dt[t] = softplus(r[t * d.H] + bias);
  for (int64_t t0 = 0; t0 < d.T; t0 += d.Q) {
    const int64_t t1 = std::min(t0 + d.Q, d.T);
    float c = 0.0f;
    for (int64_t t = t0; t < t1; ++t) cum[t] = c += dt[t] * A;
    c = 0.0f;
    for (int64_t t = t1 - 1; t >= t0; --t) {
      tail[t] = c;
      c += dt[t] * A;
    }
  }
}

// Row i of the segment sums from row i - 1: seg[j] = a_{j+1} + ... + a_i (j < i), seg[i] = 0, with
// a_i = dt_i A. Each entry sums only its own segment (as segsum in mamba_ssm's ssd_minimal), so
// e^{seg[j]} keeps full relative precision where e^{cum_i - cum_j} would not (see the top of the file).
inline void next_seg_row(float* __restrict seg, int64_t i, float ai) {
#pragma omp simd
  for (int64_t j = 0; j < i; ++j) seg[j] += ai;
  seg[i] = 0.0f;
}

inline int64_t block_end(int64_t i, int64_t L) { return std::min((i / kRowBlock + 1) * kRowBlock, L); }

// Y[L, P] += tril(M) X with M[L, L] (row stride ldm) zero above the diagonal inside each row block.
void lower_mm(float* Y, int64_t ldy, const float* M, int64_t ldm, const float* X, int64_t ldx, int64_t L, int64_t P) {
  for (int64_t r0 = 0; r0 < L; r0 += kRowBlock) {
    const int64_t r1 = std::min(r0 + kRowBlock, L);
    gemm(false, false, r1 - r0, P, r1, 1.0f, M + r0 * ldm, ldm, X, ldx, 1.0f, Y + r0 * ldy, ldy);
  }
}

// Y[L, P] += tril(M)^T X, the same masking: output rows [r0, r1) read rows [r0, L) of M and X.
void lower_t_mm(float* Y, int64_t ldy, const float* M, int64_t ldm, const float* X, int64_t ldx, int64_t L, int64_t P) {
  for (int64_t r0 = 0; r0 < L; r0 += kRowBlock) {
    const int64_t r1 = std::min(r0 + kRowBlock, L);
    gemm(true, false, r1 - r0, P, L - r0, 1.0f, M + r0 * ldm + r0, ldm, X + r0 * ldx, ldx, 1.0f, Y + r0 * ldy, ldy);
  }
}

// S[N, W] <- e^{cum_{L-1}} S + B^T Xw per head block of P columns, with
// Xw[j, k P + p] = e^{tail_j} dt_j x[j, k P + p] (scratch [L, W]).
STRATA_CPU_CLONES
void pass_state(float* S, float* Xw, const float* X, const float* Bc, const float* dt, const float* cum,
                const float* tail, int64_t heads, int64_t L, const Dims& d) {
  const int64_t P = d.P, N = d.N, W = heads * P, ld = d.ld(), T = d.T;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < heads; ++k) {
      const float el = exp_nonpos(cum[k * T + L - 1]);
      float* __restrict s = S + n * W + k * P;
#pragma omp simd
      for (int64_t p = 0; p < P; ++p) s[p] *= el;
    }
  // Token rows are swept whole (all heads), the order in which they lie in memory.
  for (int64_t j = 0; j < L; ++j)
    for (int64_t k = 0; k < heads; ++k) {
      const float w = exp_nonpos(tail[k * T + j]) * dt[k * T + j];
      const float* __restrict xr = X + j * ld + k * P;
      float* __restrict o = Xw + j * W + k * P;
#pragma omp simd
      for (int64_t p = 0; p < P; ++p) o[p] = w * xr[p];
    }
  gemm(true, false, N, W, L, 1.0f, Bc, d.bs(), Xw, W, 1.0f, S, W);
}

// Per-thread scratch of the forward.
struct FwdScratch {
  std::vector<float> dt, cum, tail, seg, ex, S, CB, M, Xw;
  explicit FwdScratch(const Dims& d)
      : dt(size_t(d.max_heads * d.T)),
        cum(size_t(d.max_heads * d.T)),
        tail(size_t(d.max_heads * d.T)),
        seg(size_t(d.Q)),
        ex(size_t(d.max_heads * d.Q)),
        S(size_t(d.N * d.max_heads * d.P)),
        CB(size_t(d.Q * d.Q)),
        M(size_t(d.Q * d.Q)),
        Xw(size_t(d.Q * d.max_heads * d.P)) {}
};

}  // namespace

STRATA_CPU_CLONES
void ssd_forward(float* y, float* s_last, const float* x, const float* dt_raw, const float* dt_bias, const float* A,
                 const float* Bm, const float* Cm, const float* Dskip, const float* s0, int64_t B, int64_t T, int64_t H,
                 int64_t P, int64_t G, int64_t N, int64_t chunk) {
  const Dims d = make_dims(B, T, H, P, G, N, chunk);
  const int64_t ntasks = B * G * d.slices, ld = d.ld(), bs = d.bs(), Q = d.Q;
#pragma omp parallel if (ntasks > 1 && B * T * H * P * N > 32768)
  {
    FwdScratch sc(d);
#pragma omp for schedule(static)
    for (int64_t task = 0; task < ntasks; ++task) {
      const Task tk = task_of(d, task);
      const int64_t nh = tk.heads(), W = nh * P;
      float* S = sc.S.data();
      if (!s0) std::fill_n(S, N * W, 0.0f);
      for (int64_t k = 0; k < nh; ++k) {
        const int64_t h = tk.h0 + k;
        head_dt(sc.dt.data() + k * T, sc.cum.data() + k * T, sc.tail.data() + k * T, dt_raw, dt_bias[h], A[h], d,
                tk.b, h);
        if (s0) {
          const float* s = s0 + (tk.b * H + h) * P * N;
          for (int64_t p = 0; p < P; ++p)
            for (int64_t n = 0; n < N; ++n) S[n * W + k * P + p] = s[p * N + n];
        }
      }
      for (int64_t c = 0; c < d.nc; ++c) {
        const int64_t t0 = c * Q, L = std::min(Q, T - t0);
        const float* Bc = Bm + (tk.b * T + t0) * bs + tk.g * N;
        const float* Cc = Cm + (tk.b * T + t0) * bs + tk.g * N;
        const float* X = x + (tk.b * T + t0) * ld + tk.h0 * P;
        float* Y = y + (tk.b * T + t0) * ld + tk.h0 * P;
        gemm(false, true, L, L, N, 1.0f, Cc, bs, Bc, bs, 0.0f, sc.CB.data(), Q);
        // Read the state: Y = C S_in for all heads, then per head e^{cum_i} and the skip D x.
        gemm(false, false, L, W, N, 1.0f, Cc, bs, S, W, 0.0f, Y, ld);
        for (int64_t k = 0; k < nh; ++k)
          for (int64_t i = 0; i < L; ++i) sc.ex[k * Q + i] = exp_nonpos(sc.cum[k * T + t0 + i]);
        for (int64_t i = 0; i < L; ++i)
          for (int64_t k = 0; k < nh; ++k) {
            const float ei = sc.ex[k * Q + i], Dh = Dskip[tk.h0 + k];
            float* __restrict yr = Y + i * ld + k * P;
            const float* __restrict xr = X + i * ld + k * P;
#pragma omp simd
            for (int64_t p = 0; p < P; ++p) yr[p] = ei * yr[p] + Dh * xr[p];
          }
        for (int64_t k = 0; k < nh; ++k) {
          const float* dk = sc.dt.data() + k * T + t0;
          const float Ah = A[tk.h0 + k];
          float* __restrict M = sc.M.data();
          float* __restrict seg = sc.seg.data();
          for (int64_t i = 0; i < L; ++i) {
            next_seg_row(seg, i, dk[i] * Ah);
            const float* __restrict cb = sc.CB.data() + i * Q;
            float* __restrict m = M + i * Q;
#pragma omp simd
            for (int64_t j = 0; j <= i; ++j) m[j] = cb[j] * exp_nonpos(seg[j]) * dk[j];
            std::fill(m + i + 1, m + block_end(i, L), 0.0f);
          }
          lower_mm(Y + k * P, ld, M, Q, X + k * P, ld, L, P);
        }
        // The last chunk's state is only needed when the caller keeps it.
        if (c + 1 < d.nc || s_last)
          pass_state(S, sc.Xw.data(), X, Bc, sc.dt.data() + t0, sc.cum.data() + t0, sc.tail.data() + t0, nh, L, d);
      }
      if (s_last) {
        for (int64_t k = 0; k < nh; ++k) {
          float* s = s_last + (tk.b * H + tk.h0 + k) * P * N;
          for (int64_t p = 0; p < P; ++p)
            for (int64_t n = 0; n < N; ++n) s[p * N + n] = S[n * W + k * P + p];
        }
      }
    }
  }
}

namespace {

// Per-thread scratch of the backward.
struct BwdScratch {
  std::vector<float> dt, cum, tail, seg, S, dS, CB, DX, K1, K2, Yr, dye, V, Xq, ex, q, ddt, dcum;
  explicit BwdScratch(const Dims& d)
      : dt(size_t(d.max_heads * d.T)),
        cum(size_t(d.max_heads * d.T)),
        tail(size_t(d.max_heads * d.T)),
        seg(size_t(d.Q)),
        S(size_t(std::max<int64_t>(d.nc, 1) * d.N * d.max_heads * d.P)),
        dS(size_t(d.N * d.max_heads * d.P)),
        CB(size_t(d.Q * d.Q)),
        DX(size_t(d.Q * d.Q)),
        K1(size_t(d.Q * d.Q)),
        K2(size_t(d.Q * d.Q)),
        Yr(size_t(d.Q * d.max_heads * d.P)),
        dye(size_t(d.Q * d.max_heads * d.P)),
        V(size_t(d.Q * d.max_heads * d.P)),
        Xq(size_t(d.Q * d.max_heads * d.P)),
        ex(size_t(d.max_heads * d.Q)),
        q(size_t(d.max_heads * d.Q)),
        ddt(size_t(d.max_heads * d.Q)),
        dcum(size_t(d.max_heads * d.Q)) {}
};

// Per-(b, h) sums that several tasks would otherwise race on: reduced over b in order afterwards.
struct HeadSums {
  double dA = 0, dD = 0, dbias = 0;
};

// Pointers of one chunk of one task.
struct ChunkIO {
  const float *X, *DY, *Bc, *Cc;
  float *DXo, *dBt, *dCt;  // dx rows (assigned), dB / dC rows of the group (accumulated)
};

// Backward of one chunk for all heads of a task. In: S_in [N, W] (the state entering the chunk),
// sc.dS = dL/dS_out [N, W]; out: sc.dS = dL/dS_in. Fills sc.ddt and sc.dcum ([heads, Q]): the
// direct gradient of dt and the gradient of each cum_i.
//   Intra, per head, with E_ij = e^{cum_i - cum_j} (j <= i) and DX_ij = dy_i . x_j:
//     K1 = CB o E o dt_j (the forward's matrix): dx += K1^T dy;  K2 = DX o E o dt_j: dB += K2^T C, dC += K2 B
//     (K2 summed over the heads, which share B and C); G = CB o E o DX: ddt_j += sum_i G_ij, and each
//     G_ij dt_j raises dcum_i and lowers dcum_j.
//   State read, y_i += e^{cum_i} S_in^T C_i:  dC_i += S_in (e^{cum_i} dy_i), dcum_i += e^{cum_i} dy_i . S_in^T C_i,
//     dS_in += C_i (e^{cum_i} dy_i)^T.
//   State passed, S_out = e^{cum_{L-1}} S_in + sum_j q_j dt_j B_j x_j^T with q_j = e^{cum_{L-1} - cum_j}:
//     with v_j = dS_out^T B_j:  dx_j += q_j dt_j v_j,  ddt_j += q_j x_j . v_j,  dB_j += dS_out (q_j dt_j x_j),
//     dS_in += e^{cum_{L-1}} dS_out, and cum_{L-1} / cum_j move by +/- q_j dt_j x_j . v_j and
//     e^{cum_{L-1}} <dS_out, S_in>.
STRATA_CPU_CLONES
void chunk_backward(BwdScratch& sc, HeadSums* sums, const ChunkIO& io, const float* S_in, const float* A,
                    const float* Dskip, const Task& tk, int64_t t0, int64_t L, const Dims& d) {
  const int64_t P = d.P, N = d.N, Q = d.Q, T = d.T, ld = d.ld(), bs = d.bs(), nh = tk.heads(), W = nh * P;
  float* dS = sc.dS.data();
  for (int64_t k = 0; k < nh; ++k) {
    const float* ck = sc.cum.data() + k * T + t0;
    const float* tl = sc.tail.data() + k * T + t0;
    for (int64_t j = 0; j < L; ++j) {
      sc.ex[k * Q + j] = exp_nonpos(ck[j]);
      sc.q[k * Q + j] = exp_nonpos(tl[j]);
      sc.ddt[k * Q + j] = 0.0f;
      sc.dcum[k * Q + j] = 0.0f;
    }
  }
  gemm(false, true, L, L, N, 1.0f, io.Cc, bs, io.Bc, bs, 0.0f, sc.CB.data(), Q);

  // State read: Yr = C S_in (all heads), dye = e^{cum_i} dy.
  gemm(false, false, L, W, N, 1.0f, io.Cc, bs, S_in, W, 0.0f, sc.Yr.data(), W);
  for (int64_t i = 0; i < L; ++i)
    for (int64_t k = 0; k < nh; ++k) {
      const float e = sc.ex[k * Q + i];
      const float* __restrict dyr = io.DY + i * ld + k * P;
      const float* __restrict xr = io.X + i * ld + k * P;
      const float* __restrict yr = sc.Yr.data() + i * W + k * P;
      float* __restrict o = sc.dye.data() + i * W + k * P;
      float sy = 0.0f, sx = 0.0f;
#pragma omp simd reduction(+ : sy, sx)
      for (int64_t p = 0; p < P; ++p) {
        o[p] = e * dyr[p];
        sy += dyr[p] * yr[p];
        sx += dyr[p] * xr[p];
      }
      sc.dcum[k * Q + i] += e * sy;
      sums[k].dD += sx;
    }
  gemm(false, true, L, N, W, 1.0f, sc.dye.data(), W, S_in, W, 1.0f, io.dCt, bs);

  // State passed: V = B dS_out, Xq = q dt x.
  gemm(false, false, L, W, N, 1.0f, io.Bc, bs, dS, W, 0.0f, sc.V.data(), W);
  for (int64_t j = 0; j < L; ++j)
    for (int64_t k = 0; k < nh; ++k) {
      const float* dk = sc.dt.data() + k * T + t0;
      const float Dh = Dskip[tk.h0 + k];
      float* dc = sc.dcum.data() + k * Q;
      const float qj = sc.q[k * Q + j], qd = qj * dk[j];
      const float* __restrict v = sc.V.data() + j * W + k * P;
      const float* __restrict xr = io.X + j * ld + k * P;
      const float* __restrict dyr = io.DY + j * ld + k * P;
      float* __restrict dxr = io.DXo + j * ld + k * P;
      float* __restrict xq = sc.Xq.data() + j * W + k * P;
      float xv = 0.0f;
#pragma omp simd reduction(+ : xv)
      for (int64_t p = 0; p < P; ++p) {
        dxr[p] = qd * v[p] + Dh * dyr[p];
        xq[p] = qd * xr[p];
        xv += xr[p] * v[p];
      }
      const float z = qj * xv;
      sc.ddt[k * Q + j] += z;
      dc[L - 1] += z * dk[j];
      dc[j] -= z * dk[j];
    }
  // e^{cum_{L-1}} <dS_out, S_in> per head's columns.
  for (int64_t k = 0; k < nh; ++k) {
    float s = 0.0f;
    for (int64_t n = 0; n < N; ++n) s += dot(dS + n * W + k * P, S_in + n * W + k * P, P);
    sc.dcum[k * Q + L - 1] += exp_nonpos(sc.cum[k * T + t0 + L - 1]) * s;
  }
  gemm(false, true, L, N, W, 1.0f, sc.Xq.data(), W, dS, W, 1.0f, io.dBt, bs);
  // dS_in = e^{cum_{L-1}} dS_out + C^T dye (dS_out is not read after this).
  for (int64_t k = 0; k < nh; ++k) {
    const float el = exp_nonpos(sc.cum[k * T + t0 + L - 1]);
    for (int64_t n = 0; n < N; ++n) {
      float* __restrict s = dS + n * W + k * P;
#pragma omp simd
      for (int64_t p = 0; p < P; ++p) s[p] *= el;
    }
  }
  gemm(true, false, N, W, L, 1.0f, io.Cc, bs, sc.dye.data(), W, 1.0f, dS, W);

  // Intra-chunk, per head.
  float* __restrict K1 = sc.K1.data();
  float* __restrict K2 = sc.K2.data();
  float* __restrict DX = sc.DX.data();
  std::fill_n(K2, L * Q, 0.0f);
  for (int64_t k = 0; k < nh; ++k) {
    const float* dk = sc.dt.data() + k * T + t0;
    const float Ah = A[tk.h0 + k];
    float* __restrict seg = sc.seg.data();
    float* __restrict ddt = sc.ddt.data() + k * Q;
    float* __restrict dc = sc.dcum.data() + k * Q;
    const float* DYk = io.DY + k * P;
    const float* Xk = io.X + k * P;
    for (int64_t r0 = 0; r0 < L; r0 += kRowBlock) {
      const int64_t r1 = std::min(r0 + kRowBlock, L);
      gemm(false, true, r1 - r0, r1, P, 1.0f, DYk + r0 * ld, ld, Xk, ld, 0.0f, DX + r0 * Q, Q);
    }
    for (int64_t i = 0; i < L; ++i) {
      next_seg_row(seg, i, dk[i] * Ah);
      const float* __restrict cb = sc.CB.data() + i * Q;
      const float* __restrict dx = DX + i * Q;
      float* __restrict k1 = K1 + i * Q;
      float* __restrict k2 = K2 + i * Q;
      float rowsum = 0.0f;
#pragma omp simd reduction(+ : rowsum)
      for (int64_t j = 0; j <= i; ++j) {
        const float e = exp_nonpos(seg[j]);
        const float cbe = cb[j] * e;
        const float g = cbe * dx[j];
        k1[j] = cbe * dk[j];
        k2[j] += dx[j] * e * dk[j];
        ddt[j] += g;
        dc[j] -= g * dk[j];
        rowsum += g * dk[j];
      }
      std::fill(k1 + i + 1, k1 + block_end(i, L), 0.0f);
      dc[i] += rowsum;
    }
    lower_t_mm(io.DXo + k * P, ld, K1, Q, DYk, ld, L, P);
  }
  gemm(true, false, L, N, L, 1.0f, K2, Q, io.Cc, bs, 1.0f, io.dBt, bs);
  gemm(false, false, L, N, L, 1.0f, K2, Q, io.Bc, bs, 1.0f, io.dCt, bs);
}

}  // namespace

STRATA_CPU_CLONES
void ssd_backward(float* dx, float* ddt_raw, float* dA, float* dBm, float* dCm, float* dDskip, float* ddt_bias,
                  const float* dy, const float* x, const float* dt_raw, const float* dt_bias, const float* A,
                  const float* Bm, const float* Cm, const float* Dskip, int64_t B, int64_t T, int64_t H, int64_t P,
                  int64_t G, int64_t N, int64_t chunk) {
  const Dims d = make_dims(B, T, H, P, G, N, chunk);
  if (B * T == 0) return;  // no activations; the head grads receive nothing
  const int64_t ntasks = B * G * d.slices, ld = d.ld(), bs = d.bs(), Q = d.Q;
  // Slice s > 0 of a group writes its dB/dC into its own buffer; they are added in slice order.
  const size_t bn = size_t(B * T * G * N);
  std::vector<float> extra(2 * bn * size_t(d.slices - 1));
  std::vector<HeadSums> sums(size_t(B * H));
#pragma omp parallel if (ntasks > 1 && B * T * H * P * N > 16384)
  {
    BwdScratch sc(d);
#pragma omp for schedule(static)
    for (int64_t task = 0; task < ntasks; ++task) {
      const Task tk = task_of(d, task);
      const int64_t nh = tk.heads(), W = nh * P;
      float* dBs = tk.s == 0 ? dBm : extra.data() + 2 * bn * size_t(tk.s - 1);
      float* dCs = tk.s == 0 ? dCm : dBs + bn;
      for (int64_t t = 0; t < T; ++t) {
        std::fill_n(dBs + (tk.b * T + t) * bs + tk.g * N, N, 0.0f);
        std::fill_n(dCs + (tk.b * T + t) * bs + tk.g * N, N, 0.0f);
      }
      for (int64_t k = 0; k < nh; ++k) {
        const int64_t h = tk.h0 + k;
        head_dt(sc.dt.data() + k * T, sc.cum.data() + k * T, sc.tail.data() + k * T, dt_raw, dt_bias[h], A[h], d,
                tk.b, h);
      }
      auto bc = [&](auto* base, int64_t t0) { return base + (tk.b * T + t0) * bs + tk.g * N; };
      auto xr = [&](auto* base, int64_t t0) { return base + (tk.b * T + t0) * ld + tk.h0 * P; };
      // States entering every chunk (s0 = 0), recomputed rather than saved by the forward.
      float* S = sc.S.data();
      std::fill_n(S, N * W, 0.0f);
      for (int64_t c = 0; c + 1 < d.nc; ++c) {
        float* next = S + (c + 1) * N * W;
        std::memcpy(next, S + c * N * W, sizeof(float) * size_t(N * W));
        pass_state(next, sc.Xq.data(), xr(x, c * Q), bc(Bm, c * Q), sc.dt.data() + c * Q, sc.cum.data() + c * Q,
                   sc.tail.data() + c * Q, nh, Q, d);
      }
      std::fill_n(sc.dS.data(), N * W, 0.0f);
      HeadSums* hs = sums.data() + tk.b * H + tk.h0;
      for (int64_t c = d.nc - 1; c >= 0; --c) {
        const int64_t t0 = c * Q, L = std::min(Q, T - t0);
        const ChunkIO io{xr(x, t0), xr(dy, t0), bc(Bm, t0), bc(Cm, t0), xr(dx, t0), bc(dBs, t0), bc(dCs, t0)};
        chunk_backward(sc, hs, io, S + c * N * W, A, Dskip, tk, t0, L, d);
        // cum_i = a_0 + ... + a_i, so da_t = sum_{i>=t} dcum_i; a = dt A; dt = softplus(dt_raw + bias).
        for (int64_t k = 0; k < nh; ++k) {
          const int64_t h = tk.h0 + k;
          const float* dk = sc.dt.data() + k * T + t0;
          float da = 0.0f;
          double sA = 0, sb = 0;
          for (int64_t t = L - 1; t >= 0; --t) {
            da += sc.dcum[k * Q + t];
            sA += double(dk[t]) * da;
            const int64_t o = (tk.b * T + t0 + t) * H + h;
            const float du = (sc.ddt[k * Q + t] + A[h] * da) * sigmoid(dt_raw[o] + dt_bias[h]);
            ddt_raw[o] = du;
            sb += du;
          }
          hs[k].dA += sA;
          hs[k].dbias += sb;
        }
      }
    }
  }
  for (int64_t s = 1; s < d.slices; ++s) {
    const float* eb = extra.data() + 2 * bn * size_t(s - 1);
    for (size_t i = 0; i < bn; ++i) dBm[i] += eb[i];
    for (size_t i = 0; i < bn; ++i) dCm[i] += eb[bn + i];
  }
  for (int64_t h = 0; h < H; ++h) {
    double a = 0, dd = 0, db = 0;
    for (int64_t b = 0; b < B; ++b) {
      const HeadSums& hs = sums[size_t(b * H + h)];
      a += hs.dA, dd += hs.dD, db += hs.dbias;
    }
    dA[h] += float(a);
    dDskip[h] += float(dd);
    ddt_bias[h] += float(db);
  }
}

// One token per (b, h): state[P][N] <- e^{dt A} state + dt x B^T;  y = state C + D x.
STRATA_CPU_CLONES
void ssd_step(float* y, float* state, const float* x, const float* dt_raw, const float* dt_bias, const float* A,
              const float* Bm, const float* Cm, const float* Dskip, int64_t B, int64_t H, int64_t P, int64_t G,
              int64_t N) {
  STRATA_CHECK(H % G == 0, "ssd_step: heads ({}) must be a multiple of groups ({})", H, G);
  const int64_t hpg = H / G;
#pragma omp parallel for schedule(static) if (B * H * P * N > 32768)
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const int64_t b = bh / H, h = bh % H, g = h / hpg;
    const float dt = softplus(dt_raw[bh] + dt_bias[h]);
    const float a = exp_nonpos(dt * A[h]);
    const float* __restrict Bv = Bm + (b * G + g) * N;
    const float* __restrict Cv = Cm + (b * G + g) * N;
    const float* xv = x + bh * P;
    float* yv = y + bh * P;
    for (int64_t p = 0; p < P; ++p) {
      float* __restrict s = state + (bh * P + p) * N;
      const float dx = dt * xv[p];
      float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
      for (int64_t n = 0; n < N; ++n) {
        s[n] = a * s[n] + dx * Bv[n];
        acc += s[n] * Cv[n];
      }
      yv[p] = acc + Dskip[h] * xv[p];
    }
  }
}

}  // namespace strata::cpu
