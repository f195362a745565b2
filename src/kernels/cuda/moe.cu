// CUDA twin of kernels/cpu/moe.cpp: router softmax + top-k, the Switch load-balancing loss, the
// permutation that groups tokens by expert, and the gathers / combines around the expert GEMMs.
// Everything is deterministic: the grouping is a stable radix sort (cub), the sums run in fixed
// orders (a warp tree per row; row chunks added in order; a token's rows added in row order), and
// the only atomics are integer counts.
#include "kernels/cuda/moe.h"

#include <algorithm>
#include <cub/device/device_radix_sort.cuh>

#include "core/error.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/index_check.cuh"
#include "kernels/cuda/runtime.h"
#include "kernels/cuda/scratch.cuh"

namespace strata::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;
constexpr unsigned kFull = 0xffffffffu;

inline unsigned warp_blocks(int64_t rows) { return unsigned((rows + kWarpsPerBlock - 1) / kWarpsPerBlock); }
inline unsigned blocks_for(int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

// The row a warp owns (rows are per warp, so a warp leaves or stays as a whole).
__device__ __forceinline__ int64_t warp_row() { return (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; }

// Softmax and top-k of one row per warp. Top-k takes, k times, the best entry strictly after the
// previous pick in the order (prob descending, index ascending), as the CPU twin does: each lane
// scans its entries in ascending order, then a warp argmax keeps the lower index on equal probs.
__global__ void route_fwd_kernel(int32_t* idx, float* gate, float* probs, const float* logits, int64_t N, int64_t E,
                                 int64_t k, bool renorm) {
  const int64_t n = warp_row();
  if (n >= N) return;
  const int lane = int(threadIdx.x) % 32;
  const float* l = logits + n * E;
  float* p = probs + n * E;
  float m = -INFINITY;
  for (int64_t e = lane; e < E; e += 32) m = fmaxf(m, l[e]);
  m = warp_max(m);
  float sum = 0.0f;
  for (int64_t e = lane; e < E; e += 32) sum += expf(l[e] - m);
  const float inv = 1.0f / warp_sum(sum);
  for (int64_t e = lane; e < E; e += 32) p[e] = expf(l[e] - m) * inv;  // each lane rereads only its own entries

  float prev_p = INFINITY, gsum = 0.0f;
  int64_t prev_e = -1;
  for (int64_t j = 0; j < k; ++j) {
    float bp = -1.0f;
    int64_t best = -1;
    for (int64_t e = lane; e < E; e += 32) {
      const float pe = p[e];
      const bool after_prev = pe < prev_p || (pe == prev_p && e > prev_e);
      if (after_prev && pe > bp) bp = pe, best = e;
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float op = __shfl_xor_sync(kFull, bp, o);
      const int64_t oe = __shfl_xor_sync(kFull, best, o);
      if (op > bp || (op == bp && oe >= 0 && (best < 0 || oe < best))) bp = op, best = oe;
    }
    // Nothing picked: the row's probabilities are all NaN (a NaN or infinite logit makes every one
    // NaN). As the CPU twin, take the lowest expert not yet picked (j: the earlier picks were 0..j-1)
    // with a NaN gate, so the indices stay valid and the non-finite loss is what reports it.
    if (best < 0) best = j, bp = NAN;
    if (lane == 0) {
      idx[n * k + j] = int32_t(best);
      gate[n * k + j] = bp;
    }
    gsum += bp;
    prev_p = bp;
    prev_e = best;
  }
  if (renorm) {
    __syncwarp();
    const float r = 1.0f / gsum;
    for (int64_t j = lane; j < k; j += 32) gate[n * k + j] *= r;
  }
}

// dp_j = (dgate_j - <dgate, gate>) / S with renorm (S = sum of the picked probs), else dgate_j;
// dlogits_e = p_e (dp_e - <p, dp>), dp zero off the top-k. One row per warp.
__global__ void route_bwd_kernel(float* dlogits, const float* dgate, const float* probs, const int32_t* idx,
                                 const float* gate, int64_t N, int64_t E, int64_t k, bool renorm) {
  const int64_t n = warp_row();
  if (n >= N) return;
  const int lane = int(threadIdx.x) % 32;
  const float* p = probs + n * E;
  const float* dg = dgate + n * k;
  const int32_t* ix = idx + n * k;
  float c = 0.0f, inv_s = 1.0f;
  if (renorm) {
    float s = 0.0f;
    for (int64_t j = lane; j < k; j += 32) {
      c += dg[j] * gate[n * k + j];
      s += p[ix[j]];
    }
    c = warp_sum(c);
    inv_s = 1.0f / warp_sum(s);
  }
  float dot = 0.0f;
  for (int64_t j = lane; j < k; j += 32) dot += p[ix[j]] * (dg[j] - c) * inv_s;
  dot = warp_sum(dot);
  float* dl = dlogits + n * E;
  for (int64_t e = lane; e < E; e += 32) {
    float dp = 0.0f;  // the picks of expert e (one, unless idx repeats it)
    for (int64_t j = 0; j < k; ++j)
      if (ix[j] == e) dp += (dg[j] - c) * inv_s;
    dl[e] = p[e] * (dp - dot);
  }
}

// cnt[e] = number of assignments to e (integer atomics: exact). Out-of-range indices are reported
// into `bad` (index_check.cuh).
__global__ void count_kernel(int32_t* cnt, BadIndexSlot* bad, const int32_t* idx, int64_t n, int64_t E) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int32_t e = idx[i];
    if (e < 0 || e >= E)
      report_bad_index(bad, i, e, E);
    else
      atomicAdd(cnt + e, 1);
  }
}

constexpr int64_t kProbRows = 256;  // rows per partial of P_e: the unit of the fixed-order sum

// part[chunk, e] = sum of probs[n, e] over the chunk's rows, in row order (double).
__global__ void prob_sum_kernel(double* part, const float* probs, int64_t N, int64_t E) {
  const int64_t chunk = blockIdx.y, n0 = chunk * kProbRows, n1 = n0 + kProbRows < N ? n0 + kProbRows : N;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < E; e += int64_t(gridDim.x) * blockDim.x) {
    double s = 0.0;
    for (int64_t n = n0; n < n1; ++n) s += double(probs[n * E + e]);
    part[chunk * E + e] = s;
  }
}

// loss = E * sum_e (cnt_e / (N k)) (P_e / N), all in double, experts in order (one thread).
__global__ void aux_loss_kernel(float* loss, const double* part, const int32_t* cnt, int64_t nchunks, int64_t N,
                                int64_t E, int64_t k) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  double acc = 0.0;
  for (int64_t e = 0; e < E; ++e) {
    double P = 0.0;
    for (int64_t c = 0; c < nchunks; ++c) P += part[c * E + e];
    acc += (double(cnt[e]) / double(N * k)) * (P / double(N));
  }
  *loss = float(double(E) * acc);
}

// dlogits[n, e] += p_e (g_e - <p_n, g>) with g_e = cnt_e * scale. One row per warp.
__global__ void aux_bwd_kernel(float* dlogits, const float* probs, const int32_t* cnt, float scale, int64_t N,
                               int64_t E) {
  const int64_t n = warp_row();
  if (n >= N) return;
  const int lane = int(threadIdx.x) % 32;
  const float* p = probs + n * E;
  float dot = 0.0f;
  for (int64_t e = lane; e < E; e += 32) dot += p[e] * (float(cnt[e]) * scale);
  dot = warp_sum(dot);
  float* dl = dlogits + n * E;
  for (int64_t e = lane; e < E; e += 32) dl[e] += p[e] * (float(cnt[e]) * scale - dot);
}

__global__ void iota_kernel(int32_t* v, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) v[i] = int32_t(i);
}

// From the assignments sorted by expert (stable): row_token[r] = token of the assignment at row r,
// row_of[assignment] = r.
__global__ void permute_rows_kernel(int32_t* row_token, int32_t* row_of, const int32_t* sorted_assign, int64_t n,
                                    int64_t k) {
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= n) return;
  const int32_t a = sorted_assign[r];
  row_token[r] = int32_t(a / k);
  row_of[a] = int32_t(r);
}

// offsets[e] = first row whose expert is >= e (binary search over the sorted experts), e <= E.
__global__ void offsets_kernel(int32_t* offsets, const int32_t* sorted_expert, int64_t n, int64_t E) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e > E) return;
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (sorted_expert[mid] < e)
      lo = mid + 1;
    else
      hi = mid;
  }
  offsets[e] = int32_t(lo);
}

__global__ void gather_rows_kernel(float* xp, const float* x, const int32_t* row_token, int64_t rows, int64_t D) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < rows * D;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / D, d = i % D;
    xp[i] = x[int64_t(row_token[r]) * D + d];
  }
}

// y[n, d] = sum_j gate[n, j] yp[row_of[n k + j], d], j in order (as the CPU twin).
__global__ void combine_fwd_kernel(float* y, const float* yp, const float* gate, const int32_t* row_of, int64_t N,
                                   int64_t k, int64_t D) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < N * D; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = i / D, d = i % D;
    float acc = gate[n * k] * yp[int64_t(row_of[n * k]) * D + d];
    for (int64_t j = 1; j < k; ++j) acc = fmaf(gate[n * k + j], yp[int64_t(row_of[n * k + j]) * D + d], acc);
    y[i] = acc;
  }
}

// dyp[row_of[a], d] = gate[a] dy[n, d] for assignment a = n k + j.
__global__ void combine_bwd_dyp_kernel(float* dyp, const float* dy, const float* gate, const int32_t* row_of,
                                       int64_t N, int64_t k, int64_t D) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < N * k * D;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t a = i / D, d = i % D;
    dyp[int64_t(row_of[a]) * D + d] = gate[a] * dy[(a / k) * D + d];
  }
}

// dgate[a] = <dy[n], yp[row_of[a]]>: one assignment per warp.
__global__ void combine_bwd_dgate_kernel(float* dgate, const float* dy, const float* yp, const int32_t* row_of,
                                         int64_t N, int64_t k, int64_t D) {
  const int64_t a = warp_row();
  if (a >= N * k) return;
  const int lane = int(threadIdx.x) % 32;
  const float* dyr = dy + (a / k) * D;
  const float* s = yp + int64_t(row_of[a]) * D;
  float dot = 0.0f;
  for (int64_t d = lane; d < D; d += 32) dot = fmaf(dyr[d], s[d], dot);
  dot = warp_sum(dot);
  if (lane == 0) dgate[a] = dot;
}

// dx[t, d] += dxp[r, d] for the rows r of token t, in increasing r: rows sorted by token (stable), the
// first row of each token's run sums the run. Grid (rows, column blocks).
__global__ void scatter_add_kernel(float* dx, const float* dxp, const int32_t* sorted_token, const int32_t* sorted_row,
                                   int64_t rows, int64_t D) {
  const int64_t q = blockIdx.x, d = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  if (d >= D) return;
  const int32_t t = sorted_token[q];
  if (q > 0 && sorted_token[q - 1] == t) return;  // not the first row of its token
  float* o = dx + int64_t(t) * D + d;
  float acc = *o;
  for (int64_t r = q; r < rows && sorted_token[r] == t; ++r) acc += dxp[int64_t(sorted_row[r]) * D + d];
  *o = acc;
}

// Number of low bits that hold every value in [0, n) (at least 1).
int bits_for(int64_t n) {
  int b = 1;
  while (b < 31 && (int64_t(1) << b) < n) ++b;
  return b;
}

// Stable sort of (key, value) int32 pairs by key over key bits [0, end_bit), on the current stream.
void sort_pairs(int32_t* keys_out, int32_t* vals_out, const int32_t* keys_in, const int32_t* vals_in, int64_t n,
                int end_bit) {
  size_t temp_bytes = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, keys_out, vals_in, vals_out, int(n), 0,
                                             end_bit, current_stream()));
  Scratch<char> temp{static_cast<int64_t>(temp_bytes)};
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.get(), temp_bytes, keys_in, keys_out, vals_in, vals_out, int(n), 0,
                                             end_bit, current_stream()));
}

}  // namespace

void moe_route_forward(int32_t* idx, float* gate, float* probs, const float* logits, int64_t N, int64_t E,
                       int64_t k, bool renorm) {
  STRATA_CHECK(k >= 1 && k <= E, "moe_route_forward: top_k {} must be in [1, experts = {}]", k, E);
  if (N == 0) return;
  STRATA_LAUNCH((warp_blocks(N), kThreads, 0, current_stream()), route_fwd_kernel)(idx, gate, probs, logits, N, E, k, renorm);
  CUDA_CHECK_LAUNCH();
}

void moe_route_backward(float* dlogits, const float* dgate, const float* probs, const int32_t* idx,
                        const float* gate, int64_t N, int64_t E, int64_t k, bool renorm) {
  if (N == 0) return;
  STRATA_LAUNCH((warp_blocks(N), kThreads, 0, current_stream()), route_bwd_kernel)(dlogits, dgate, probs, idx, gate, N, E, k,
                                                                      renorm);
  CUDA_CHECK_LAUNCH();
}

float moe_aux_loss_forward(const float* probs, const int32_t* idx, int64_t N, int64_t E, int64_t k) {
  if (N == 0) return 0.0f;
  const int64_t nchunks = (N + kProbRows - 1) / kProbRows;
  Scratch<int32_t> cnt(E);
  Scratch<double> part(nchunks * E);
  Scratch<float> loss(1);
  IndexCheck check(BadIndex::expert, "moe_aux_loss_forward", current_stream());
  memset_zero(cnt.get(), sizeof(int32_t) * size_t(E));
  STRATA_LAUNCH((std::min<unsigned>(blocks_for(N * k), 1024), kThreads, 0, current_stream()), count_kernel)(
      cnt.get(), check.slot(), idx, N * k, E);
  CUDA_CHECK_LAUNCH();
  STRATA_LAUNCH((dim3(blocks_for(E), unsigned(nchunks)), kThreads, 0, current_stream()), prob_sum_kernel)(part.get(), probs, N, E);
  CUDA_CHECK_LAUNCH();
  STRATA_LAUNCH((1, 1, 0, current_stream()), aux_loss_kernel)(loss.get(), part.get(), cnt.get(), nchunks, N, E, k);
  CUDA_CHECK_LAUNCH();
  check.finish();  // the loss is read back next anyway (a training forward; never recorded)
  float out = 0.0f;
  copy_to_host(&out, loss.get(), sizeof(out));
  return out;
}

// The indices were validated by moe_aux_loss_forward on the same routing; here an out-of-range one is
// only left uncounted (reported into a slot nobody reads: checking would cost a synchronisation).
void moe_aux_loss_backward(float* dlogits, const float* probs, const int32_t* idx, float coef, int64_t N,
                           int64_t E, int64_t k) {
  if (N == 0 || coef == 0.0f) return;
  Scratch<int32_t> ints(E);
  Scratch<BadIndexSlot> ignored(1);
  memset_zero(ints.get(), sizeof(int32_t) * size_t(E));
  STRATA_LAUNCH((std::min<unsigned>(blocks_for(N * k), 1024), kThreads, 0, current_stream()), count_kernel)(
      ints.get(), ignored.get(), idx, N * k, E);
  CUDA_CHECK_LAUNCH();
  // count_e / (N k) * E / N, folded with coef (the CPU twin's expression, in float).
  const float scale = coef * float(E) / (float(N) * float(N) * float(k));
  STRATA_LAUNCH((warp_blocks(N), kThreads, 0, current_stream()), aux_bwd_kernel)(dlogits, probs, ints.get(), scale, N, E);
  CUDA_CHECK_LAUNCH();
}

void moe_permute_indices(int32_t* offsets, int32_t* row_token, int32_t* row_of, const int32_t* idx, int64_t N,
                         int64_t E, int64_t k) {
  const int64_t n = N * k;
  STRATA_CHECK(n < (int64_t(1) << 31), "moe_permute_indices: {} assignments exceed the int32 row index", n);
  if (n == 0) {
    memset_zero(offsets, sizeof(int32_t) * size_t(E + 1));
    return;
  }
  Scratch<int32_t> buf(3 * n + E);
  int32_t *assign = buf.get(), *sorted_expert = assign + n, *sorted_assign = sorted_expert + n,
          *cnt = sorted_assign + n;
  // The counts only feed the index check (the offsets come from the sorted experts).
  IndexCheck check(BadIndex::expert, "moe_permute_indices", current_stream());
  memset_zero(cnt, sizeof(int32_t) * size_t(E));
  STRATA_LAUNCH((std::min<unsigned>(blocks_for(n), 1024), kThreads, 0, current_stream()), count_kernel)(
      cnt, check.slot(), idx, n, E);
  CUDA_CHECK_LAUNCH();
  STRATA_LAUNCH((blocks_for(n), kThreads, 0, current_stream()), iota_kernel)(assign, n);
  CUDA_CHECK_LAUNCH();
  sort_pairs(sorted_expert, sorted_assign, idx, assign, n, bits_for(E));
  STRATA_LAUNCH((blocks_for(n), kThreads, 0, current_stream()), permute_rows_kernel)(row_token, row_of, sorted_assign, n, k);
  CUDA_CHECK_LAUNCH();
  STRATA_LAUNCH((blocks_for(E + 1), kThreads, 0, current_stream()), offsets_kernel)(offsets, sorted_expert, n, E);
  CUDA_CHECK_LAUNCH();
  // A direct call waits here and throws like the CPU twin; inside a recorded decode step nothing
  // waits, and a bad index surfaces when the step's stream is synchronised (index_check.cuh).
  check.finish();
}

void moe_gather_rows(float* xp, const float* x, const int32_t* row_token, int64_t rows, int64_t D) {
  if (rows * D == 0) return;
  STRATA_LAUNCH((grid_1d(rows * D), kThreads, 0, current_stream()), gather_rows_kernel)(xp, x, row_token, rows, D);
  CUDA_CHECK_LAUNCH();
}

void moe_combine_forward(float* y, const float* yp, const float* gate, const int32_t* row_of, int64_t N, int64_t k,
                         int64_t D) {
  if (N * D == 0) return;
  STRATA_LAUNCH((grid_1d(N * D), kThreads, 0, current_stream()), combine_fwd_kernel)(y, yp, gate, row_of, N, k, D);
  CUDA_CHECK_LAUNCH();
}

void moe_combine_backward(float* dyp, float* dgate, const float* dy, const float* yp, const float* gate,
                          const int32_t* row_of, int64_t N, int64_t k, int64_t D) {
  if (N * k == 0) return;
  if (D > 0) {
    STRATA_LAUNCH((grid_1d(N * k * D), kThreads, 0, current_stream()), combine_bwd_dyp_kernel)(dyp, dy, gate, row_of, N, k, D);
    CUDA_CHECK_LAUNCH();
  }
  STRATA_LAUNCH((warp_blocks(N * k), kThreads, 0, current_stream()), combine_bwd_dgate_kernel)(dgate, dy, yp, row_of, N, k, D);
  CUDA_CHECK_LAUNCH();
}

void moe_scatter_add_rows(float* dx, const float* dxp, const int32_t* row_token, int64_t rows, int64_t D) {
  if (rows * D == 0) return;
  STRATA_CHECK(rows < (int64_t(1) << 31), "moe_scatter_add_rows: {} rows exceed the int32 row index", rows);
  Scratch<int32_t> buf(3 * rows);
  int32_t *iota = buf.get(), *sorted_token = iota + rows, *sorted_row = sorted_token + rows;
  STRATA_LAUNCH((blocks_for(rows), kThreads, 0, current_stream()), iota_kernel)(iota, rows);
  CUDA_CHECK_LAUNCH();
  sort_pairs(sorted_token, sorted_row, row_token, iota, rows, 31);  // token ids are >= 0: 31 bits hold them
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>((D + 127) / 128));
  STRATA_LAUNCH((grid, 128, 0, current_stream()), scatter_add_kernel)(dx, dxp, sorted_token, sorted_row, rows, D);
  CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
