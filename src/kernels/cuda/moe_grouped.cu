// CUDA twin of kernels/cpu/moe_grouped.cpp: every expert's GEMM in one launch (a grouped GEMM)
// instead of a loop of small ones. The expert row counts live on the device (the routing produced
// them), so the launch covers an upper bound of row tiles, ceil(rows / 64) + E, and each block finds
// its (expert, row tile) by walking offsets[] (E entries, cached); blocks past the last tile exit.
// Weight gradients get one block per (expert, 64 x 64 tile of W_e) that runs over the expert's rows:
// each output has one owner and a fixed summation order (no atomics, bit-reproducible).
// Products are tile::Mma64 (fp32 SIMT), the same tile the SSD kernels use.
#include "core/error.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/runtime.h"
#include "kernels/cuda/tile_mma.cuh"

namespace strata::cuda {
namespace {

using Mma = tile::Mma64;
constexpr int kTile = 64;

// The expert and rows [r0, r1) of row tile t, tiles numbered expert by expert; false past the end.
// Uniform over the block (every thread reads the same offsets).
__device__ bool find_row_tile(const int32_t* offsets, int64_t E, int64_t t, int64_t& e, int64_t& r0, int64_t& r1) {
  int64_t first = 0;  // index of expert e's first tile
  for (e = 0; e < E; ++e) {
    const int64_t a = offsets[e], b = offsets[e + 1], nt = (b - a + kTile - 1) / kTile;
    if (t < first + nt) {
      r0 = a + (t - first) * kTile;
      r1 = b < r0 + kTile ? b : r0 + kTile;
      return true;
    }
    first += nt;
  }
  return false;
}

// out[r, o] = sum_i inp[r, i] W_e[o, i]. Grid (row-tile bound, OC tiles).
__global__ void __launch_bounds__(Mma::kThreads)
    grouped_fwd_kernel(float* out, const float* inp, const float* w, int64_t w_stride, const int32_t* offsets,
                       int64_t E, int64_t IC, int64_t OC) {
  STRATA_SHARED(float, smem, [Mma::kSmemFloats]);
  int64_t e, r0, r1;
  if (!find_row_tile(offsets, E, blockIdx.x, e, r0, r1)) return;
  const int64_t o0 = int64_t(blockIdx.y) * kTile;
  const float* W = w + e * w_stride;
  Mma mm;
  mm.run<false, false>(
      smem, 0, int(IC), [&](int m, int i) { return r0 + m < r1 ? inp[(r0 + m) * IC + i] : 0.0f; },
      [&](int i, int n) { return o0 + n < OC ? W[(o0 + n) * IC + i] : 0.0f; });
#pragma unroll
  for (int ii = 0; ii < 4; ++ii)
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      const int64_t r = r0 + mm.row(ii), o = o0 + mm.col(jj);
      if (r < r1 && o < OC) out[r * OC + o] = mm.acc[ii][jj];
    }
}

// dinp[r, i] (=, or +=) sum_o dout[r, o] W_e[o, i]. Grid (row-tile bound, IC tiles).
__global__ void __launch_bounds__(Mma::kThreads)
    grouped_dinp_kernel(float* dinp, const float* dout, const float* w, int64_t w_stride, const int32_t* offsets,
                        int64_t E, int64_t IC, int64_t OC, bool accumulate) {
  STRATA_SHARED(float, smem, [Mma::kSmemFloats]);
  int64_t e, r0, r1;
  if (!find_row_tile(offsets, E, blockIdx.x, e, r0, r1)) return;
  const int64_t i0 = int64_t(blockIdx.y) * kTile;
  const float* W = w + e * w_stride;
  Mma mm;
  mm.run<false, true>(
      smem, 0, int(OC), [&](int m, int o) { return r0 + m < r1 ? dout[(r0 + m) * OC + o] : 0.0f; },
      [&](int o, int n) { return i0 + n < IC ? W[int64_t(o) * IC + i0 + n] : 0.0f; });
#pragma unroll
  for (int ii = 0; ii < 4; ++ii)
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      const int64_t r = r0 + mm.row(ii), i = i0 + mm.col(jj);
      if (r < r1 && i < IC) {
        float* p = dinp + r * IC + i;
        *p = accumulate ? *p + mm.acc[ii][jj] : mm.acc[ii][jj];
      }
    }
}

// dW_e[o, i] += sum over the expert's rows r of dout[r, o] inp[r, i]. Grid (E, OC tiles, IC tiles).
__global__ void __launch_bounds__(Mma::kThreads)
    grouped_dw_kernel(float* dw, const float* dout, const float* inp, int64_t w_stride, const int32_t* offsets,
                      int64_t IC, int64_t OC) {
  STRATA_SHARED(float, smem, [Mma::kSmemFloats]);
  const int64_t e = blockIdx.x, a = offsets[e], n = int64_t(offsets[e + 1]) - a;
  if (n <= 0) return;  // an idle expert gets no gradient
  const int64_t o0 = int64_t(blockIdx.y) * kTile, i0 = int64_t(blockIdx.z) * kTile;
  Mma mm;
  mm.run<true, true>(
      smem, 0, int(n), [&](int m, int r) { return o0 + m < OC ? dout[(a + r) * OC + o0 + m] : 0.0f; },
      [&](int r, int c) { return i0 + c < IC ? inp[(a + r) * IC + i0 + c] : 0.0f; });
  float* W = dw + e * w_stride;
#pragma unroll
  for (int ii = 0; ii < 4; ++ii)
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      const int64_t o = o0 + mm.row(ii), i = i0 + mm.col(jj);
      if (o < OC && i < IC) W[o * IC + i] += mm.acc[ii][jj];
    }
}

inline unsigned tiles(int64_t n) { return unsigned((n + kTile - 1) / kTile); }

void check_shapes(int64_t rows, int64_t E, int64_t IC, int64_t OC, const char* op) {
  STRATA_CHECK(rows >= 0 && E >= 1 && IC > 0 && OC > 0, "{}: bad shape rows={} E={} IC={} OC={}", op, rows, E, IC, OC);
  STRATA_CHECK(IC < (int64_t(1) << 31) && OC < (int64_t(1) << 31) && rows < (int64_t(1) << 31),
               "{}: dimensions must fit in int32 (rows={} IC={} OC={})", op, rows, IC, OC);
}

}  // namespace

void moe_grouped_linear_forward(float* out, const float* inp, const float* w, int64_t w_stride,
                                const int32_t* offsets, int64_t rows, int64_t E, int64_t IC, int64_t OC) {
  check_shapes(rows, E, IC, OC, "moe_grouped_linear_forward");
  if (rows == 0) return;
  const dim3 grid(tiles(rows) + unsigned(E), tiles(OC));
  STRATA_LAUNCH((grid, Mma::kThreads, 0, current_stream()), grouped_fwd_kernel)(out, inp, w, w_stride, offsets, E, IC, OC);
  CUDA_CHECK_LAUNCH();
}

void moe_grouped_linear_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                                 int64_t w_stride, const int32_t* offsets, int64_t rows, int64_t E, int64_t IC,
                                 int64_t OC, bool accumulate_dinp) {
  check_shapes(rows, E, IC, OC, "moe_grouped_linear_backward");
  if (rows == 0) return;
  if (dinp) {
    const dim3 grid(tiles(rows) + unsigned(E), tiles(IC));
    STRATA_LAUNCH((grid, Mma::kThreads, 0, current_stream()), grouped_dinp_kernel)(dinp, dout, w, w_stride, offsets, E, IC, OC,
                                                                      accumulate_dinp);
    CUDA_CHECK_LAUNCH();
  }
  if (dw) {
    STRATA_CHECK(tiles(OC) <= 65535 && tiles(IC) <= 65535, "moe_grouped_linear_backward: weight [{}, {}] exceeds the grid",
                 OC, IC);
    const dim3 grid(static_cast<unsigned>(E), tiles(OC), tiles(IC));
    STRATA_LAUNCH((grid, Mma::kThreads, 0, current_stream()), grouped_dw_kernel)(dw, dout, inp, w_stride, offsets, IC, OC);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace strata::cuda
