// The kernels of CUDA flash attention, fp32 (host side: attention.cu; contract: attention.h; CPU twin:
// kernels/cpu/attention.cpp).
//
// Structure follows FlashAttention-2 (csrc/flash_attn/src/flash_fwd_kernel.h, flash_bwd_kernel.h),
// written for SIMT fp32 instead of tensor-core fragments:
//
// Rows. As in the CPU twin, the G = Hq / Hkv query heads that read one kv head are packed as rows of
// one tile, row r = i * G + g (query position i, group head g), so a K/V tile loaded once serves all
// of them. A block owns (row tile, batch, kv head) and walks the visible keys in tiles.
//
// Forward (flash_fwd_kernel): 128 threads as 16 row groups x 8 key groups. A thread owns RT rows
// and 8 keys of every score tile (keys tc + 8n, so that its column of P is stored conflict-free) and
// RT rows x DVC/8 columns of the output (columns tc*4 + 32m .. +4: float4 reads of V). Scores are
// accumulated over the head dim in chunks of kDC channels staged through shared memory (Q^T and
// K^T, so any hd_qk works, MLA's 576 included); the online softmax runs in registers with the row
// max/sum reduced over the 8 threads of a row by shuffles; P goes through shared memory (transposed)
// to meet V. Scores are kept in log2 units (q is pre-scaled by scale * log2 e) so exp is exp2.
// Output columns beyond DVC = 128 are split over blockIdx.z (scores recomputed per chunk).
//
// Decode (flash-decoding): few rows per kv head (Tq * G <= 16) take a 16-row tile (RT = 1) and the
// keys are split over blocks; each split writes its normalised output and lse, and a combine kernel
// merges them: out = sum_s exp(lse_s - lse) out_s, lse = log sum_s exp(lse_s). The paged variant is
// the same kernel with key rows looked up in a block table.
//
// Backward (flash_bwd_kernel, deterministic variant): D = rowsum(dO * O) first; then one kernel per
// key tile accumulates dK, dV in registers over every query tile that sees it (no atomics: the block
// owns its keys, and all G heads of the group are its rows), and one kernel per query tile
// accumulates dQ over its visible key tiles. Both recompute P = exp(S - lse) and
// dS = P * (dP - D) from resident shared-memory tiles of Q, dO, K, V (hence head dims <= 256).
// FA-2 adds dQ with atomicAdd instead; the separate pass costs 3 more tile products per tile pair
// (7 instead of 5) but gives bitwise-reproducible gradients, which the CPU twin also guarantees.
//
// Sliding window (window > 0, fp32 forward and backward only): the row at position pos sees keys
// pos - window + 1 .. pos; the forward starts at the tile's lowest visible key, both mask below it,
// and the backward kernels skip the tiles no row sees.
//
// This header holds only device code and pure host planning (no CUDA runtime calls). Everything
// sits in an anonymous namespace: the header is included by exactly one translation unit of a binary
// (attention.cu). Without a GPU, tests/cuda/test_cuda_attention.cpp runs these very kernels on the
// CPU emulator (tests/emulator, the STRATA_CUDA_EMULATOR build).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#if defined(__CUDACC__) || defined(STRATA_CUDA_EMULATOR)
#include <cuda_bf16.h>
#include <mma.h>
#endif

// Loop unrolling hints for nvcc only (host compilers would warn about an unknown pragma).
#ifdef __CUDACC__
#define STRATA_UNROLL_STR(x) #x
#define STRATA_UNROLL(n) _Pragma(STRATA_UNROLL_STR(unroll n))
#else
#define STRATA_UNROLL(n)
#endif

#include "kernels/cuda/launch.cuh"

namespace strata::cuda::flash {
namespace {

constexpr int kThreads = 128;  // every attention kernel: 4 warps
constexpr int kBK = 64;        // keys per forward tile
constexpr int kDC = 32;        // head-dim channels per staged chunk of Q^T / K^T
constexpr int kQResident = 128;  // hd_qk up to this keeps the whole Q tile in shared memory
constexpr int kMaxSplits = 128;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

__host__ __device__ inline int ceil_div(int64_t a, int64_t b) { return int((a + b - 1) / b); }

// ------------------------------------------------------------------------------------------------
// Forward / decode

struct FwdParams {
  const float* q;
  const float* k;
  const float* v;
  float* out;       // [B, Tq, Hq, dv] (nsplit == 1)
  float* lse;       // [B, Hq, Tq] or null (nsplit == 1)
  float* o_part;    // [nsplit, B*Tq*Hq, dv] per-split normalised outputs (nsplit > 1)
  float* lse_part;  // [nsplit, B*Hq*Tq] per-split lse (nsplit > 1)
  int64_t k_bstride, k_tstride, v_bstride, v_tstride;
  const int32_t* block_table;  // paged: [B, max_blocks]
  const int32_t* seq_lens;     // paged: [B]
  int max_blocks, block_size, num_blocks;
  int B, Tq, Tk, Hq, Hkv, G, dqk, dv;
  int window;        // sliding window (0: full causal); paged too (rows at seq_len - 1)
  bool no_split;     // never split the keys (the summation order then does not depend on B)
  float scale_log2;  // softmax scale * log2(e)
  int n_dvc;         // output column chunks (blockIdx.z % n_dvc)
  int nsplit;        // key splits (blockIdx.z / n_dvc)
  int split_len;     // keys per split, a multiple of kBK
  bool q_resident;   // the whole Q tile stays in shared memory (dqk <= kQResident)
};

__device__ __forceinline__ float warp_max8(float x) {  // over the 8 lanes of a row group
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 4));
}
__device__ __forceinline__ float warp_sum8(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  x += __shfl_xor_sync(0xffffffffu, x, 2);
  return x + __shfl_xor_sync(0xffffffffu, x, 4);
}

// Shared memory of the forward kernel, in floats (offsets are multiples of 4: float4 access).
template <int RT, int DVC>
struct FwdSmem {
  static constexpr int BQ = 16 * RT;                  // rows per tile
  static constexpr int QS = BQ + (RT == 4 ? 4 : 1);   // Q^T row stride (float4 reads for RT = 4)
  static constexpr int KS = kBK + 1;                  // K^T row stride: conflict-free transposing stores
  static constexpr int PS = BQ + 4;                   // P^T row stride: conflict-free float4 stores
  __host__ __device__ static int q_floats(bool resident, int dqk) {
    const int chunks = resident ? ceil_div(dqk, kDC) : 1;
    return (chunks * kDC * QS + 3) / 4 * 4;
  }
  static size_t bytes(bool resident, int dqk) {
    // floats, then 3 int64 offset arrays (query rows, key rows of k and v)
    const size_t f = size_t(q_floats(resident, dqk)) + (kDC * KS + 3) / 4 * 4 + kBK * DVC + kBK * PS;
    return f * sizeof(float) + (BQ + 2 * kBK) * sizeof(int64_t);
  }
};

// Offsets of the k and v rows of key t of batch b (-1 if t is not a key of this split).
template <bool kPaged>
__device__ __forceinline__ void kv_row(const FwdParams& p, int b, int t, int64_t& ko, int64_t& vo) {
  if constexpr (kPaged) {
    int blk = p.block_table[int64_t(b) * p.max_blocks + t / p.block_size];
    blk = min(max(blk, 0), p.num_blocks - 1);
    const int64_t slot = int64_t(blk) * p.block_size + t % p.block_size;
    ko = slot * p.k_tstride;
    vo = slot * p.v_tstride;
  } else {
    ko = int64_t(b) * p.k_bstride + int64_t(t) * p.k_tstride;
    vo = int64_t(b) * p.v_bstride + int64_t(t) * p.v_tstride;
  }
}

// grid (row tiles, B * Hkv, n_dvc * nsplit), kThreads threads.
template <int RT, int DVC, bool kPaged>
__global__ void __launch_bounds__(kThreads) flash_fwd_kernel(const FwdParams p) {
  using L = FwdSmem<RT, DVC>;
  constexpr int BQ = L::BQ, QS = L::QS, KS = L::KS, PS = L::PS;
  constexpr int NM = DVC / 32;  // float4 column groups per thread
  static_assert(RT == 1 || RT == 4, "rows per thread: 1 (decode) or 4");
  static_assert(DVC % 32 == 0, "output chunk must be a multiple of 32 columns");

  STRATA_DYNAMIC_SMEM(unsigned char, smem_raw);
  float* Qt = reinterpret_cast<float*>(smem_raw);             // [chunks][kDC][QS] q^T * scale*log2e
  float* Kt = Qt + L::q_floats(p.q_resident, p.dqk);           // [kDC][KS] k^T
  float* Vs = Kt + (kDC * KS + 3) / 4 * 4;                     // [kBK][DVC]
  float* Pt = Vs + kBK * DVC;                                  // [kBK][PS] probabilities, transposed
  int64_t* qoff = reinterpret_cast<int64_t*>(Pt + kBK * PS);   // [BQ] q offset of each row (-1: none)
  int64_t* koff = qoff + BQ;                                   // [kBK] k row offset of each key (-1: none)
  int64_t* voff = koff + kBK;                                  // [kBK]

  const int tid = threadIdx.x, tr = tid >> 3, tc = tid & 7;
  const int rt = gridDim.x - 1 - blockIdx.x;  // the latest rows see the most keys: start them first
  const int b = blockIdx.y / p.Hkv, kvh = blockIdx.y % p.Hkv;
  const int dvc = blockIdx.z % p.n_dvc, split = blockIdx.z / p.n_dvc;
  const int G = p.G, R = p.Tq * G, r0 = rt * BQ;
  int Tk = p.Tk;
  if constexpr (kPaged) Tk = min(max(p.seq_lens[b], 0), p.max_blocks * p.block_size);
  const int off = Tk - p.Tq;  // query i sits at position off + i (paged: Tq = 1, off = seq_len - 1)

  int pos[RT];  // position of each of this thread's rows (padding rows copy the last real row)
  for (int i = 0; i < RT; ++i) pos[i] = off + min(r0 + tr * RT + i, R - 1) / G;
  // Keys [klo, khi) of this split that some row of the tile sees; with a window, from the lowest key
  // the tile's first row sees (kfirst).
  const int kend = min(Tk, off + (min(r0 + BQ, R) - 1) / G + 1);
  const int klo = split * p.split_len, khi = min(kend, klo + p.split_len);
  const int kfirst = p.window > 0 ? max(klo, off + r0 / G - p.window + 1) : klo;

  if (tid < BQ) {
    const int r = r0 + tid;
    qoff[tid] = r < R ? ((int64_t(b) * p.Tq + r / G) * p.Hq + kvh * G + r % G) * p.dqk : -1;
  }
  __syncthreads();
  // Q^T, channels d0..d0+nchan: channel d0 + c of row `row` at dst[c * QS + row] (the resident
  // chunks are stacked, chunk d0 / kDC at Qt + d0 * QS); zero beyond the rows / dqk.
  auto load_q = [&](float* dst, int d0, int nchan) {
    for (int e = tid; e < BQ * nchan; e += kThreads) {
      const int row = e / nchan, c = e % nchan, d = d0 + c;
      const int64_t o = qoff[row];
      dst[c * QS + row] = (o >= 0 && d < p.dqk) ? p.q[o + d] * p.scale_log2 : 0.0f;
    }
  };
  if (p.q_resident) load_q(Qt, 0, ceil_div(p.dqk, kDC) * kDC);  // visible after the first tile's barrier

  float o[RT][4 * NM], m[RT], l[RT];
  for (int i = 0; i < RT; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
    for (int c = 0; c < 4 * NM; ++c) o[i][c] = 0.0f;
  }
  const int64_t kh = int64_t(kvh) * p.dqk, vh = int64_t(kvh) * p.dv + int64_t(dvc) * DVC;

  for (int j0 = kfirst; j0 < khi; j0 += kBK) {
    __syncthreads();  // (A) the previous tile's readers of Qt, Kt, Vs, Pt, koff, voff are done
    if (tid < kBK) {
      const int j = j0 + tid;
      int64_t ko = -1, vo = -1;
      if (j < khi) kv_row<kPaged>(p, b, j, ko, vo);
      koff[tid] = ko;
      voff[tid] = vo;
    }
    __syncthreads();  // (B)
    // V tile [kBK, DVC] for this block's column chunk; zero for missing keys and columns, so that
    // P = 0 never meets garbage (0 * NaN).
    for (int e = tid; e < kBK * DVC; e += kThreads) {
      const int j = e / DVC, c = e % DVC;
      const int64_t vo = voff[j];
      Vs[e] = (vo >= 0 && dvc * DVC + c < p.dv) ? p.v[vo + vh + c] : 0.0f;
    }
    // S = (Q * scale * log2e) K^T over the head dim, kDC channels at a time.
    float s[RT][8];
    for (int i = 0; i < RT; ++i)
      for (int n = 0; n < 8; ++n) s[i][n] = 0.0f;
    for (int d0 = 0; d0 < p.dqk; d0 += kDC) {
      if (d0 > 0) __syncthreads();  // (C) readers of the previous chunk are done
      if (!p.q_resident) load_q(Qt, d0, kDC);
      for (int e = tid; e < kBK * kDC; e += kThreads) {
        const int j = e / kDC, c = e % kDC;
        const int64_t ko = koff[j];
        Kt[c * KS + j] = (ko >= 0 && d0 + c < p.dqk) ? p.k[ko + kh + d0 + c] : 0.0f;
      }
      __syncthreads();  // (D)
      const float* Qc = p.q_resident ? Qt + (d0 / kDC) * kDC * QS : Qt;
STRATA_UNROLL(8)
      for (int c = 0; c < kDC; ++c) {
        float qv[RT], kv[8];
        if constexpr (RT == 4) {
          const float4 q4 = *reinterpret_cast<const float4*>(Qc + c * QS + tr * 4);
          qv[0] = q4.x, qv[1] = q4.y, qv[2] = q4.z, qv[3] = q4.w;
        } else {
          qv[0] = Qc[c * QS + tr];
        }
        for (int n = 0; n < 8; ++n) kv[n] = Kt[c * KS + tc + 8 * n];
        for (int i = 0; i < RT; ++i)
          for (int n = 0; n < 8; ++n) s[i][n] = fmaf(qv[i], kv[n], s[i][n]);
      }
    }
    // Online softmax. Key j0 + tc + 8n is visible to a row iff it is below khi, not after the row's
    // position and (with a window) not before position - window + 1. A row with nothing visible yet keeps m = -inf; base 0 then keeps every exp
    // at exp2(-inf) = 0 instead of NaN (FA-2's softmax.h does the same).
    for (int i = 0; i < RT; ++i) {
      float mx = m[i];
      for (int n = 0; n < 8; ++n) {
        const int j = j0 + tc + 8 * n;
        if (j >= khi || j > pos[i] || (p.window > 0 && j <= pos[i] - p.window)) s[i][n] = -INFINITY;
        mx = fmaxf(mx, s[i][n]);
      }
      mx = warp_max8(mx);
      const float base = mx == -INFINITY ? 0.0f : mx;
      const float alpha = exp2f(m[i] - base);
      m[i] = mx;
      float rs = 0.0f;
      for (int n = 0; n < 8; ++n) {
        s[i][n] = exp2f(s[i][n] - base);
        rs += s[i][n];
      }
      l[i] = l[i] * alpha + rs;  // this thread's share of the row sum; reduced at the end
      for (int c = 0; c < 4 * NM; ++c) o[i][c] *= alpha;
    }
    for (int n = 0; n < 8; ++n) {
      float* dst = Pt + (tc + 8 * n) * PS + tr * RT;
      if constexpr (RT == 4)
        *reinterpret_cast<float4*>(dst) = make_float4(s[0][n], s[1][n], s[2][n], s[3][n]);
      else
        dst[0] = s[0][n];
    }
    __syncthreads();  // (E) Pt and Vs complete
    // O += P V
    const int jn = min(kBK, khi - j0);
STRATA_UNROLL(4)
    for (int j = 0; j < jn; ++j) {
      float pv[RT];
      if constexpr (RT == 4) {
        const float4 p4 = *reinterpret_cast<const float4*>(Pt + j * PS + tr * 4);
        pv[0] = p4.x, pv[1] = p4.y, pv[2] = p4.z, pv[3] = p4.w;
      } else {
        pv[0] = Pt[j * PS + tr];
      }
      for (int mm = 0; mm < NM; ++mm) {
        const float4 v4 = *reinterpret_cast<const float4*>(Vs + j * DVC + 32 * mm + tc * 4);
        for (int i = 0; i < RT; ++i) {
          o[i][4 * mm + 0] = fmaf(pv[i], v4.x, o[i][4 * mm + 0]);
          o[i][4 * mm + 1] = fmaf(pv[i], v4.y, o[i][4 * mm + 1]);
          o[i][4 * mm + 2] = fmaf(pv[i], v4.z, o[i][4 * mm + 2]);
          o[i][4 * mm + 3] = fmaf(pv[i], v4.w, o[i][4 * mm + 3]);
        }
      }
    }
  }

  // Normalise and store. l = 0 only for a row that saw no key of this split (or an empty paged
  // sequence): output 0, lse -inf, which the combine kernel weighs as 0.
  const int64_t rows_all = int64_t(p.B) * p.Tq * p.Hq;
  for (int i = 0; i < RT; ++i) {
    const float li = warp_sum8(l[i]);
    const int r = r0 + tr * RT + i;
    if (r >= R) continue;
    const int qi = r / G, h = kvh * G + r % G;
    const int64_t row = (int64_t(b) * p.Tq + qi) * p.Hq + h;
    const int64_t lse_at = (int64_t(b) * p.Hq + h) * p.Tq + qi;
    const float inv = li > 0.0f ? 1.0f / li : 0.0f;
    const float lse = li > 0.0f ? (m[i] + log2f(li)) * kLn2 : -INFINITY;
    float* dst = p.nsplit == 1 ? p.out + row * p.dv : p.o_part + (int64_t(split) * rows_all + row) * p.dv;
    for (int mm = 0; mm < NM; ++mm)
      for (int e = 0; e < 4; ++e) {
        const int c = dvc * DVC + 32 * mm + tc * 4 + e;
        if (c < p.dv) dst[c] = o[i][4 * mm + e] * inv;
      }
    if (tc == 0 && dvc == 0) {
      if (p.nsplit > 1)
        p.lse_part[int64_t(split) * rows_all + lse_at] = lse;
      else if (p.lse)
        p.lse[lse_at] = lse;
    }
  }
}

// Merges the splits of each row: one warp per row (b, i, h), 4 rows per block.
__global__ void __launch_bounds__(kThreads)
    combine_splits_kernel(float* out, float* lse, const float* o_part, const float* lse_part, int B, int Tq, int Hq,
                          int dv, int nsplit) {
  STRATA_SHARED(float, w, [kThreads / 32][kMaxSplits]);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t rows = int64_t(B) * Tq * Hq;
  const int64_t row = int64_t(blockIdx.x) * (kThreads / 32) + warp;  // (b*Tq + i)*Hq + h
  if (row >= rows) return;  // whole warps leave: the shuffles below stay converged
  const int h = int(row % Hq), qi = int((row / Hq) % Tq);
  const int64_t b = row / (int64_t(Hq) * Tq);
  const int64_t lse_at = (b * Hq + h) * Tq + qi;
  float mx = -INFINITY;
  for (int s = lane; s < nsplit; s += 32) mx = fmaxf(mx, lse_part[int64_t(s) * rows + lse_at]);
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  float sum = 0.0f;
  for (int s = lane; s < nsplit; s += 32) {
    const float e = mx == -INFINITY ? 0.0f : expf(lse_part[int64_t(s) * rows + lse_at] - mx);
    w[warp][s] = e;
    sum += e;
  }
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  __syncwarp();
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  for (int c = lane; c < dv; c += 32) {
    float acc = 0.0f;
    for (int s = 0; s < nsplit; ++s) acc = fmaf(w[warp][s], o_part[(int64_t(s) * rows + row) * dv + c], acc);
    out[row * dv + c] = acc * inv;
  }
  if (lse && lane == 0) lse[lse_at] = sum > 0.0f ? mx + logf(sum) : -INFINITY;
}

// ------------------------------------------------------------------------------------------------
// Backward

constexpr int kBB = 32;  // rows and keys per backward tile
constexpr int kPS = kBB + 1;

struct BwdParams {
  const float* q;
  const float* k;
  const float* v;
  const float* dout;
  const float* lse;
  const float* D;  // [B, Hq, T] rowsum(dO * O)
  float* dq;
  float* dk;
  float* dv;
  int B, T, Hq, Hkv, G, dqk, dv_dim;
  int window;  // sliding window (0: full causal)
  float scale, scale_log2;
};

// Odd row strides keep the column reads of the S/dP products conflict-free.
__host__ __device__ constexpr int odd_stride(int n) { return n % 2 ? n : n + 1; }

struct BwdSmem {
  int QS, VS;
  float *Qs, *dOs, *Ks, *Vs, *Ps, *dSs, *lse_s, *D_s;
  __device__ BwdSmem(float* base, int dqk, int dv) : QS(odd_stride(dqk)), VS(odd_stride(dv)) {
    Qs = base;                // [kBB][QS] query rows (unscaled)
    dOs = Qs + kBB * QS;      // [kBB][VS]
    Ks = dOs + kBB * VS;      // [kBB][QS]
    Vs = Ks + kBB * QS;       // [kBB][VS]
    Ps = Vs + kBB * VS;       // [kBB][kPS] P[row][key]
    dSs = Ps + kBB * kPS;     // [kBB][kPS] dS[row][key]
    lse_s = dSs + kBB * kPS;  // [kBB] lse * log2e of each row
    D_s = lse_s + kBB;        // [kBB]
  }
  static size_t bytes(int dqk, int dv) {
    return sizeof(float) * (size_t(2) * kBB * (odd_stride(dqk) + odd_stride(dv)) + 2 * kBB * kPS + 2 * kBB);
  }
};

// Loads packed rows r0.. of (b, kvh): Q, dO, lse, D (zero / neutral for rows past T*G). A warp per
// row, lanes along the channels (coalesced).
__device__ void load_rows(const BwdParams& p, const BwdSmem& sm, int b, int kvh, int r0) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, R = p.T * p.G;
  for (int rr = warp; rr < kBB; rr += kThreads / 32) {
    const int r = r0 + rr;
    const bool ok = r < R;
    const int i = ok ? r / p.G : 0, h = kvh * p.G + (ok ? r % p.G : 0);
    const int64_t row = (int64_t(b) * p.T + i) * p.Hq + h;
    for (int c = lane; c < p.dqk; c += 32) sm.Qs[rr * sm.QS + c] = ok ? p.q[row * p.dqk + c] : 0.0f;
    for (int c = lane; c < p.dv_dim; c += 32) sm.dOs[rr * sm.VS + c] = ok ? p.dout[row * p.dv_dim + c] : 0.0f;
    if (lane == 0) {
      const int64_t at = (int64_t(b) * p.Hq + h) * p.T + i;
      sm.lse_s[rr] = ok ? p.lse[at] * kLog2e : 0.0f;
      sm.D_s[rr] = ok ? p.D[at] : 0.0f;
    }
  }
}

// Loads keys j0.. of (b, kvh): K and V rows (zero past T).
__device__ void load_keys(const BwdParams& p, const BwdSmem& sm, int b, int kvh, int j0) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int jj = warp; jj < kBB; jj += kThreads / 32) {
    const int j = j0 + jj;
    const bool ok = j < p.T;
    const int64_t row = (int64_t(b) * p.T + (ok ? j : 0)) * p.Hkv + kvh;
    for (int c = lane; c < p.dqk; c += 32) sm.Ks[jj * sm.QS + c] = ok ? p.k[row * p.dqk + c] : 0.0f;
    for (int c = lane; c < p.dv_dim; c += 32) sm.Vs[jj * sm.VS + c] = ok ? p.v[row * p.dv_dim + c] : 0.0f;
  }
}

// The recomputed tile: P[row][key] = exp(scale S - lse), dS = P (dO.V - D), 0 where row r0 + row is
// past T*G or key j0 + key is past T, after the row's position or (window) before position - window + 1. Thread: rows 2tr, 2tr+1, keys
// tc + 8n. Reads Qs, dOs, Ks, Vs, lse_s, D_s; writes Ps (if kWantP) and dSs.
template <bool kWantP>
__device__ void p_ds_tile(const BwdParams& p, const BwdSmem& sm, int r0, int j0) {
  const int tid = threadIdx.x, tr = tid >> 3, tc = tid & 7;
  float s[2][4] = {}, dp[2][4] = {};
  const float* q0 = sm.Qs + (2 * tr) * sm.QS;
  const float* q1 = q0 + sm.QS;
  for (int d = 0; d < p.dqk; ++d) {
    const float a0 = q0[d], a1 = q1[d];
    for (int n = 0; n < 4; ++n) {
      const float kv = sm.Ks[(tc + 8 * n) * sm.QS + d];
      s[0][n] = fmaf(a0, kv, s[0][n]);
      s[1][n] = fmaf(a1, kv, s[1][n]);
    }
  }
  const float* g0 = sm.dOs + (2 * tr) * sm.VS;
  const float* g1 = g0 + sm.VS;
  for (int d = 0; d < p.dv_dim; ++d) {
    const float a0 = g0[d], a1 = g1[d];
    for (int n = 0; n < 4; ++n) {
      const float vv = sm.Vs[(tc + 8 * n) * sm.VS + d];
      dp[0][n] = fmaf(a0, vv, dp[0][n]);
      dp[1][n] = fmaf(a1, vv, dp[1][n]);
    }
  }
  const int R = p.T * p.G;
  for (int i = 0; i < 2; ++i) {
    const int rr = 2 * tr + i, r = r0 + rr;
    const int pos = r / p.G;
    for (int n = 0; n < 4; ++n) {
      const int jj = tc + 8 * n, j = j0 + jj;
      float pr = 0.0f, ds = 0.0f;
      if (r < R && j < p.T && j <= pos && (p.window <= 0 || j > pos - p.window)) {
        pr = exp2f(s[i][n] * p.scale_log2 - sm.lse_s[rr]);
        ds = pr * (dp[i][n] - sm.D_s[rr]);
      }
      if constexpr (kWantP) sm.Ps[rr * kPS + jj] = pr;
      sm.dSs[rr * kPS + jj] = ds;
    }
  }
}

// D[b, h, i] = sum_c dO * O over the v channels: a warp per row.
__global__ void __launch_bounds__(kThreads)
    attn_bwd_dot_do_o_kernel(float* D, const float* dout, const float* out, int B, int T, int Hq, int dv) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * (kThreads / 32) + warp;  // (b*T + i)*Hq + h
  if (row >= int64_t(B) * T * Hq) return;
  float acc = 0.0f;
  for (int c = lane; c < dv; c += 32) acc = fmaf(dout[row * dv + c], out[row * dv + c], acc);
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (lane == 0) {
    const int h = int(row % Hq), i = int((row / Hq) % T);
    const int64_t b = row / (int64_t(Hq) * T);
    D[(b * Hq + h) * T + i] = acc;
  }
}

// dK, dV of one key tile: grid (key tiles, B * Hkv, column chunks). The block owns keys j0..j0+31 of
// (b, kvh) and columns [z*KC, z*KC + KC) of dK and [z*VC, z*VC + VC) of dV; it walks every packed
// query row that sees the tile (positions >= j0):
//   dV += P^T dO, dK += dS^T Q (times scale at the end).
// Thread: keys 4tj..4tj+3, columns tcol + 16m.
template <int KC, int VC>
__global__ void __launch_bounds__(kThreads) flash_bwd_dkdv_kernel(const BwdParams p) {
  STRATA_DYNAMIC_SMEM(float, smem_f);
  const BwdSmem sm(smem_f, p.dqk, p.dv_dim);
  const int tid = threadIdx.x, tj = tid >> 4, tcol = tid & 15;
  const int j0 = blockIdx.x * kBB;
  const int b = blockIdx.y / p.Hkv, kvh = blockIdx.y % p.Hkv;
  const int kc0 = blockIdx.z * KC, vc0 = blockIdx.z * VC;
  constexpr int NK = KC / 16, NV = VC / 16;
  float dk[4][NK] = {}, dv[4][NV] = {};
  // Columns clamped into the row so a chunk wider than the head dim reads real (ignored) values.
  int kcol[NK], vcol[NV];
  for (int m = 0; m < NK; ++m) kcol[m] = min(kc0 + tcol + 16 * m, p.dqk - 1);
  for (int m = 0; m < NV; ++m) vcol[m] = min(vc0 + tcol + 16 * m, p.dv_dim - 1);

  load_keys(p, sm, b, kvh, j0);
  const int R = p.T * p.G;
  // With a window, positions from j0 + kBB - 1 + window on see no key of the tile.
  const int64_t r_lim = int64_t(j0 + kBB - 1 + p.window) * p.G;
  const int r_end = p.window > 0 && r_lim < R ? int(r_lim) : R;
  for (int r0 = (j0 * p.G) / kBB * kBB; r0 < r_end; r0 += kBB) {  // first tile holding position j0
    __syncthreads();  // (A) readers of the previous rows are done (and, first time, keys loaded)
    load_rows(p, sm, b, kvh, r0);
    __syncthreads();  // (B)
    p_ds_tile<true>(p, sm, r0, j0);
    __syncthreads();  // (C) Ps, dSs complete
    for (int rr = 0; rr < kBB; ++rr) {
      float pk[4], dsk[4];
      for (int k = 0; k < 4; ++k) {
        pk[k] = sm.Ps[rr * kPS + 4 * tj + k];
        dsk[k] = sm.dSs[rr * kPS + 4 * tj + k];
      }
      for (int m = 0; m < NV; ++m) {
        const float g = sm.dOs[rr * sm.VS + vcol[m]];
        for (int k = 0; k < 4; ++k) dv[k][m] = fmaf(pk[k], g, dv[k][m]);
      }
      for (int m = 0; m < NK; ++m) {
        const float qv = sm.Qs[rr * sm.QS + kcol[m]];
        for (int k = 0; k < 4; ++k) dk[k][m] = fmaf(dsk[k], qv, dk[k][m]);
      }
    }
  }
  for (int k = 0; k < 4; ++k) {
    const int j = j0 + 4 * tj + k;
    if (j >= p.T) continue;
    const int64_t row = (int64_t(b) * p.T + j) * p.Hkv + kvh;
    for (int m = 0; m < NK; ++m) {
      const int c = kc0 + tcol + 16 * m;
      if (c < p.dqk && c < kc0 + KC) p.dk[row * p.dqk + c] = dk[k][m] * p.scale;
    }
    for (int m = 0; m < NV; ++m) {
      const int c = vc0 + tcol + 16 * m;
      if (c < p.dv_dim && c < vc0 + VC) p.dv[row * p.dv_dim + c] = dv[k][m];
    }
  }
}

// dQ of one packed row tile: grid (row tiles, B * Hkv, column chunks of KC). Walks the key tiles the
// rows see: dQ += dS K (times scale at the end). Thread: rows 4tq..4tq+3, columns tcol + 16m.
template <int KC>
__global__ void __launch_bounds__(kThreads) flash_bwd_dq_kernel(const BwdParams p) {
  STRATA_DYNAMIC_SMEM(float, smem_f);
  const BwdSmem sm(smem_f, p.dqk, p.dv_dim);
  const int tid = threadIdx.x, tq = tid >> 4, tcol = tid & 15;
  const int rt = gridDim.x - 1 - blockIdx.x;  // the latest rows see the most keys: start them first
  const int r0 = rt * kBB;
  const int b = blockIdx.y / p.Hkv, kvh = blockIdx.y % p.Hkv;
  const int kc0 = blockIdx.z * KC;
  constexpr int NK = KC / 16;
  float dq[4][NK] = {};
  int kcol[NK];
  for (int m = 0; m < NK; ++m) kcol[m] = min(kc0 + tcol + 16 * m, p.dqk - 1);

  load_rows(p, sm, b, kvh, r0);
  const int R = p.T * p.G;
  const int last_pos = (min(r0 + kBB, R) - 1) / p.G;  // keys 0..last_pos are seen by some row
  // With a window, no row sees a key below the first row's position - window + 1.
  const int first_key = p.window > 0 ? max(0, r0 / p.G - p.window + 1) : 0;
  for (int j0 = first_key / kBB * kBB; j0 <= last_pos; j0 += kBB) {
    __syncthreads();  // (A) readers of the previous keys are done (and, first time, rows loaded)
    load_keys(p, sm, b, kvh, j0);
    __syncthreads();  // (B)
    p_ds_tile<false>(p, sm, r0, j0);
    __syncthreads();  // (C) dSs complete
    for (int jj = 0; jj < kBB; ++jj) {
      float ds[4];
      for (int i = 0; i < 4; ++i) ds[i] = sm.dSs[(4 * tq + i) * kPS + jj];
      for (int m = 0; m < NK; ++m) {
        const float kv = sm.Ks[jj * sm.QS + kcol[m]];
        for (int i = 0; i < 4; ++i) dq[i][m] = fmaf(ds[i], kv, dq[i][m]);
      }
    }
  }
  for (int i = 0; i < 4; ++i) {
    const int r = r0 + 4 * tq + i;
    if (r >= R) continue;
    const int64_t row = (int64_t(b) * p.T + r / p.G) * p.Hq + kvh * p.G + r % p.G;
    for (int m = 0; m < NK; ++m) {
      const int c = kc0 + tcol + 16 * m;
      if (c < p.dqk && c < kc0 + KC) p.dq[row * p.dqk + c] = dq[i][m] * p.scale;
    }
  }
}


// ------------------------------------------------------------------------------------------------
// bf16 forward on tensor cores (WMMA 16x16x16, fp32 accumulation), head dim HD = 64 or 128.
//
// 4 warps, 64 packed rows per block (16 per warp), 64 keys per tile. A warp keeps its Q rows as
// HD/16 matrix_a fragments for the whole kernel (loaded once, FA-2 style) and computes its 16 x 64
// score strip with K^T read as a col_major matrix_b straight from the K tile in shared memory. The
// softmax runs on that strip in shared memory (two lanes per row, 32 keys each), writes P as bf16,
// and O += P V goes through accumulator fragments. O itself lives in shared memory (fp32): the
// per-row rescale by exp(m_old - m_new) needs to know which row an accumulator element belongs
// to, and WMMA leaves the fragment layout unspecified (FA-2 uses mma.sync's documented layout and
// keeps O in registers; that is the next step for speed). Scores, softmax and O are fp32; only the
// operands of the two products are bf16.
struct FwdBf16Params {
  const uint16_t* q;  // raw bf16 bits
  const uint16_t* k;
  const uint16_t* v;
  float* out;
  float* lse;
  int64_t k_bstride, k_tstride, v_bstride, v_tstride;  // elements; multiples of 8 (16-byte rows)
  int B, Tq, Tk, Hq, Hkv, G;
  float scale_log2;
};

template <int HD>
struct Bf16Smem {
  static constexpr int BQ = 64, BK = 64;
  static constexpr int LDB = HD + 8;  // bf16 row stride of Q, K, V (16-byte rows, staggered banks)
  static constexpr int LDS = BK + 4;  // fp32 scores
  static constexpr int LDP = BK + 8;  // bf16 probabilities
  static constexpr int LDO = HD + 4;  // fp32 output
  // byte offsets; every buffer starts 32-byte aligned, as WMMA loads and stores require
  static constexpr size_t q_at = 0;
  static constexpr size_t k_at = q_at + size_t(BQ) * LDB * 2;
  static constexpr size_t v_at = k_at + size_t(BK) * LDB * 2;
  static constexpr size_t s_at = v_at + size_t(BK) * LDB * 2;
  static constexpr size_t p_at = s_at + size_t(BQ) * LDS * 4;
  static constexpr size_t o_at = p_at + size_t(BQ) * LDP * 2;
  static constexpr size_t off_at = o_at + size_t(BQ) * LDO * 4;  // int64 q / k / v row offsets
  static constexpr size_t bytes = off_at + size_t(BQ + 2 * BK) * 8;
  static_assert(k_at % 32 == 0 && v_at % 32 == 0 && s_at % 32 == 0 && p_at % 32 == 0 && o_at % 32 == 0,
                "WMMA needs 32-byte aligned tiles");
};

// grid (row tiles of 64 packed rows, B * Hkv), kThreads threads.
template <int HD>
__global__ void __launch_bounds__(kThreads) flash_fwd_bf16_kernel(const FwdBf16Params p) {
  namespace wmma = nvcuda::wmma;
  using L = Bf16Smem<HD>;
  constexpr int BQ = L::BQ, BK = L::BK, LDB = L::LDB, LDS = L::LDS, LDP = L::LDP, LDO = L::LDO;
  constexpr int NCH = HD / 8;  // 16-byte chunks per row
  STRATA_DYNAMIC_SMEM(unsigned char, smem_raw);
  __nv_bfloat16* Qs = reinterpret_cast<__nv_bfloat16*>(smem_raw + L::q_at);
  __nv_bfloat16* Ks = reinterpret_cast<__nv_bfloat16*>(smem_raw + L::k_at);
  __nv_bfloat16* Vs = reinterpret_cast<__nv_bfloat16*>(smem_raw + L::v_at);
  float* Ss = reinterpret_cast<float*>(smem_raw + L::s_at);
  __nv_bfloat16* Ps = reinterpret_cast<__nv_bfloat16*>(smem_raw + L::p_at);
  float* Os = reinterpret_cast<float*>(smem_raw + L::o_at);
  int64_t* qoff = reinterpret_cast<int64_t*>(smem_raw + L::off_at);
  int64_t* koff = qoff + BQ;
  int64_t* voff = koff + BK;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int rt = gridDim.x - 1 - blockIdx.x;  // the latest rows see the most keys: start them first
  const int b = blockIdx.y / p.Hkv, kvh = blockIdx.y % p.Hkv;
  const int G = p.G, R = p.Tq * G, r0 = rt * BQ;
  const int off = p.Tk - p.Tq;
  const int kend = min(p.Tk, off + (min(r0 + BQ, R) - 1) / G + 1);

  if (tid < BQ) {
    const int r = r0 + tid;
    qoff[tid] = r < R ? ((int64_t(b) * p.Tq + r / G) * p.Hq + kvh * G + r % G) * HD : -1;
  }
  for (int e = tid; e < BQ * LDO; e += kThreads) Os[e] = 0.0f;
  __syncthreads();
  // Copies rows of 16-byte chunks (8 bf16) into a tile; zero for missing rows.
  auto load_tile = [&](__nv_bfloat16* dst, const uint16_t* src, const int64_t* offs, int64_t col0) {
    for (int e = tid; e < 64 * NCH; e += kThreads) {
      const int row = e / NCH, ch = e % NCH;
      const int64_t o = offs[row];
      *reinterpret_cast<uint4*>(dst + row * LDB + 8 * ch) =
          o >= 0 ? *reinterpret_cast<const uint4*>(src + o + col0 + 8 * ch) : make_uint4(0, 0, 0, 0);
    }
  };
  load_tile(Qs, p.q, qoff, 0);
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> qf[HD / 16];
  for (int kk = 0; kk < HD / 16; ++kk) wmma::load_matrix_sync(qf[kk], Qs + (16 * warp) * LDB + 16 * kk, LDB);

  // Row `row` (of the warp's 16) is owned by lanes 2row and 2row+1: keys half * 32 .. + 31 of the
  // strip, output columns half * HD/2 .. + HD/2 - 1.
  const int row = lane >> 1, half = lane & 1, brow = 16 * warp + row;
  const int pos = off + min(r0 + brow, R - 1) / G;
  float m = -INFINITY, l = 0.0f;
  float* S_row = Ss + brow * LDS + 32 * half;
  __nv_bfloat16* P_row = Ps + brow * LDP + 32 * half;
  float* O_row = Os + brow * LDO + (HD / 2) * half;
  const int64_t kh = int64_t(kvh) * HD;

  for (int j0 = 0; j0 < kend; j0 += BK) {
    __syncthreads();  // (A) every warp is done with the previous K, V tiles
    if (tid < BK) {
      const int j = j0 + tid;
      koff[tid] = j < kend ? int64_t(b) * p.k_bstride + int64_t(j) * p.k_tstride : -1;
      voff[tid] = j < kend ? int64_t(b) * p.v_bstride + int64_t(j) * p.v_tstride : -1;
    }
    __syncthreads();  // (B)
    load_tile(Ks, p.k, koff, kh);
    load_tile(Vs, p.v, voff, kh);
    __syncthreads();  // (C)
    // S strip [16, 64] = Q_w K^T: K rows in shared memory are K^T's columns (col_major matrix_b).
    for (int n = 0; n < BK / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
      for (int kk = 0; kk < HD / 16; ++kk) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> kf;
        wmma::load_matrix_sync(kf, Ks + (16 * n) * LDB + 16 * kk, LDB);
        wmma::mma_sync(acc, qf[kk], kf, acc);
      }
      wmma::store_matrix_sync(Ss + (16 * warp) * LDS + 16 * n, acc, LDS, wmma::mem_row_major);
    }
    __syncwarp();
    // Online softmax on this lane's 32 keys of its row (scores scaled into log2 units here).
    float mx = m;
    for (int c = 0; c < 32; ++c) {
      const int j = j0 + 32 * half + c;
      const float sv = (j < kend && j <= pos) ? S_row[c] * p.scale_log2 : -INFINITY;
      S_row[c] = sv;
      mx = fmaxf(mx, sv);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float base = mx == -INFINITY ? 0.0f : mx;
    const float alpha = exp2f(m - base);
    m = mx;
    float rs = 0.0f;
    for (int c = 0; c < 32; ++c) {
      const float pr = exp2f(S_row[c] - base);
      rs += pr;
      P_row[c] = __float2bfloat16(pr);
    }
    rs += __shfl_xor_sync(0xffffffffu, rs, 1);
    l = l * alpha + rs;
    for (int c = 0; c < HD / 2; ++c) O_row[c] *= alpha;
    __syncwarp();
    // O_w += P_w V
    for (int cs = 0; cs < HD / 16; ++cs) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, Os + (16 * warp) * LDO + 16 * cs, LDO, wmma::mem_row_major);
      for (int kk = 0; kk < BK / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> pf;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> vf;
        wmma::load_matrix_sync(pf, Ps + (16 * warp) * LDP + 16 * kk, LDP);
        wmma::load_matrix_sync(vf, Vs + (16 * kk) * LDB + 16 * cs, LDB);
        wmma::mma_sync(acc, pf, vf, acc);
      }
      wmma::store_matrix_sync(Os + (16 * warp) * LDO + 16 * cs, acc, LDO, wmma::mem_row_major);
    }
    __syncwarp();
  }
  __syncwarp();
  const int r = r0 + brow;
  if (r < R) {
    const int qi = r / G, h = kvh * G + r % G;
    const int64_t orow = ((int64_t(b) * p.Tq + qi) * p.Hq + h) * HD;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int c = 0; c < HD / 2; ++c) p.out[orow + (HD / 2) * half + c] = O_row[c] * inv;
    if (half == 0 && p.lse) p.lse[(int64_t(b) * p.Hq + h) * p.Tq + qi] = l > 0.0f ? (m + log2f(l)) * kLn2 : -INFINITY;
  }
}

// ------------------------------------------------------------------------------------------------
// Host planning: tiling, key splits, grids and shared memory, shared by attention.cu and the
// emulated test. Launchers receive a kernel function and launch it on (grid, kThreads, smem).

struct Grid {
  unsigned x, y, z;
};

struct FwdPlan {
  bool few_rows;  // Tq * G <= 16: 16-row tiles (RT = 1), else 64 (RT = 4)
  int dvc_width;  // output columns per block: 32, 64 or 128
  Grid grid;
  size_t smem;
  int64_t rows;   // B * Tq * Hq: rows of the combine kernel
};

// Completes p (column chunks, Q residency, splits) and returns the launch shape. Keys are split
// when the blocks would not fill the GPU twice over (decode over a long cache): at most kMaxSplits
// splits of at least 2 key tiles. Tk_cap bounds the keys of any batch (the paged capacity).
inline FwdPlan plan_forward(FwdParams& p, int Tk_cap, int num_sms) {
  FwdPlan plan{};
  const int R = p.Tq * p.G;
  plan.few_rows = R <= 16;
  const int BQ = plan.few_rows ? 16 : 64;
  plan.dvc_width = p.dv <= 32 ? 32 : p.dv <= 64 ? 64 : 128;
  p.n_dvc = ceil_div(p.dv, plan.dvc_width);
  p.q_resident = p.dqk <= kQResident;
  const int row_tiles = ceil_div(R, BQ);
  const int64_t blocks = int64_t(row_tiles) * p.B * p.Hkv * p.n_dvc;
  const int key_tiles = std::max(1, ceil_div(Tk_cap, kBK));
  int nsplit = 1;
  if (blocks < 2 * int64_t(num_sms) && !p.no_split) {
    const int want = ceil_div(2 * int64_t(num_sms), blocks);
    nsplit = std::min({want, std::max(1, key_tiles / 2), kMaxSplits});
  }
  const int tiles_per_split = ceil_div(key_tiles, nsplit);
  p.split_len = tiles_per_split * kBK;
  p.nsplit = ceil_div(key_tiles, tiles_per_split);
  plan.grid = {unsigned(row_tiles), unsigned(p.B * p.Hkv), unsigned(p.n_dvc * p.nsplit)};
  plan.smem = plan.few_rows ? (plan.dvc_width == 32   ? FwdSmem<1, 32>::bytes(p.q_resident, p.dqk)
                               : plan.dvc_width == 64 ? FwdSmem<1, 64>::bytes(p.q_resident, p.dqk)
                                                      : FwdSmem<1, 128>::bytes(p.q_resident, p.dqk))
                            : (plan.dvc_width == 32   ? FwdSmem<4, 32>::bytes(p.q_resident, p.dqk)
                               : plan.dvc_width == 64 ? FwdSmem<4, 64>::bytes(p.q_resident, p.dqk)
                                                      : FwdSmem<4, 128>::bytes(p.q_resident, p.dqk));
  plan.rows = int64_t(p.B) * p.Tq * p.Hq;
  return plan;
}

// Scratch floats of a split forward: per-split outputs, then per-split lse.
inline size_t split_scratch_floats(const FwdParams& p, const FwdPlan& plan) {
  return size_t(p.nsplit) * size_t(plan.rows) * size_t(p.dv + 1);
}

// launch(kernel) with the flash_fwd_kernel instantiation the plan needs.
template <bool kPaged, class Launch>
void dispatch_forward(const FwdPlan& plan, Launch&& launch) {
  if (plan.few_rows) {
    if (plan.dvc_width == 32) return launch(flash_fwd_kernel<1, 32, kPaged>);
    if (plan.dvc_width == 64) return launch(flash_fwd_kernel<1, 64, kPaged>);
    return launch(flash_fwd_kernel<1, 128, kPaged>);
  }
  if (plan.dvc_width == 32) return launch(flash_fwd_kernel<4, 32, kPaged>);
  if (plan.dvc_width == 64) return launch(flash_fwd_kernel<4, 64, kPaged>);
  return launch(flash_fwd_kernel<4, 128, kPaged>);
}

// bf16 forward: 64-row tiles, one block per (row tile, batch, kv head).
inline Grid plan_forward_bf16(const FwdBf16Params& p) {
  return {unsigned(ceil_div(int64_t(p.Tq) * p.G, 64)), unsigned(p.B * p.Hkv), 1u};
}
template <class Launch>
void dispatch_forward_bf16(int hd, Launch&& launch) {
  if (hd == 64) return launch(flash_fwd_bf16_kernel<64>, Bf16Smem<64>::bytes);
  return launch(flash_fwd_bf16_kernel<128>, Bf16Smem<128>::bytes);
}

// Column chunk of the backward's register accumulators: the head dim rounded up to 32 / 64, else
// 128-column chunks over blockIdx.z.
inline int chunk_width(int d) { return d <= 32 ? 32 : d <= 64 ? 64 : 128; }

struct BwdPlan {
  int KC, VC;
  Grid grid_kv, grid_q;
  size_t smem;
};

inline BwdPlan plan_backward(const BwdParams& p) {
  BwdPlan plan{};
  plan.KC = chunk_width(p.dqk);
  plan.VC = chunk_width(p.dv_dim);
  const int kv_chunks = std::max(ceil_div(p.dqk, plan.KC), ceil_div(p.dv_dim, plan.VC));
  plan.grid_kv = {unsigned(ceil_div(p.T, kBB)), unsigned(p.B * p.Hkv), unsigned(kv_chunks)};
  plan.grid_q = {unsigned(ceil_div(int64_t(p.T) * p.G, kBB)), unsigned(p.B * p.Hkv), unsigned(ceil_div(p.dqk, plan.KC))};
  plan.smem = BwdSmem::bytes(p.dqk, p.dv_dim);
  return plan;
}

template <int KC, class Launch>
void dispatch_dkdv_v(int VC, Launch&& launch) {
  if (VC == 32) return launch(flash_bwd_dkdv_kernel<KC, 32>);
  if (VC == 64) return launch(flash_bwd_dkdv_kernel<KC, 64>);
  return launch(flash_bwd_dkdv_kernel<KC, 128>);
}
template <class Launch>
void dispatch_dkdv(const BwdPlan& plan, Launch&& launch) {
  if (plan.KC == 32) return dispatch_dkdv_v<32>(plan.VC, launch);
  if (plan.KC == 64) return dispatch_dkdv_v<64>(plan.VC, launch);
  return dispatch_dkdv_v<128>(plan.VC, launch);
}
template <class Launch>
void dispatch_dq(const BwdPlan& plan, Launch&& launch) {
  if (plan.KC == 32) return launch(flash_bwd_dq_kernel<32>);
  if (plan.KC == 64) return launch(flash_bwd_dq_kernel<64>);
  return launch(flash_bwd_dq_kernel<128>);
}

}  // namespace
}  // namespace strata::cuda::flash
