#pragma once
// WMMA (nvcuda::wmma) for the CPU emulator: bf16 16x16x16 tiles with fp32 accumulators, the subset
// the attention kernels use. Fragments are spread over the warp as on the GPU (whose layout is
// unspecified, so kernels may not index fragment elements): lane l owns accumulator elements
// l, l + 32, ... of the row-major 16x16 tile (row l / 16 + 2j, column l % 16) and holds the rows of
// a and the column of b that those need; only those are loaded, computed and stored. Every operation is a warp collective (all 32 lanes must take part, with the same operation), and the GPU's alignment
// rules are checked: pointers 32-byte aligned, ldm a multiple of 16 bytes (8 bf16 / 4 floats).
//   load:  each lane reads its part at its own time, then meets the others;
//   mma:   the lanes meet, then each computes its share of the product (fp32 sums of exact bf16
//          products, in k order);
//   store: the lanes meet, then each writes its share of the tile (elements lane, lane + 32, ...),
//          so a lane reading another lane's share needs a __syncwarp, as on the GPU.
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda_bf16.h"
#include "strata_emulator/device.h"

namespace nvcuda::wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the emulator models 16x16x16 tiles only");
  static constexpr int num_elements = 256;
  float v[16][16];  // [row][col]
};

namespace detail {
void check_pointer(const char* op, const void* p, unsigned ldm, size_t elem_bytes);
inline void meet(const char* op) {
  strata_emu::warp_collective(strata_emu::Coll::wmma, op, 0xffffffffu, nullptr, 0, 0, 32, nullptr);
}
}  // namespace detail

template <class Use, class Layout>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, __nv_bfloat16, Layout>& f, const __nv_bfloat16* p,
                             unsigned ldm) {
  static_assert(!std::is_same_v<Layout, void>, "matrix_a / matrix_b fragments need a layout");
  detail::check_pointer("load_matrix_sync", p, ldm, sizeof(__nv_bfloat16));
  // Only what this lane's share of an accumulator needs (rows lane / 16 + 2j of a, column lane % 16 of b).
  const int lane = int(strata_emu::lane_id());
  const bool is_a = std::is_same_v<Use, matrix_a>;
  for (int r = is_a ? lane / 16 : 0; r < 16; r += is_a ? 2 : 1)
    for (int c = is_a ? 0 : lane % 16; c < 16; c += is_a ? 1 : 16)
      f.v[r][c] = __bfloat162float(std::is_same_v<Layout, row_major> ? p[r * ldm + c] : p[c * ldm + r]);
  detail::meet("load_matrix_sync");
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p, unsigned ldm,
                             layout_t layout) {
  detail::check_pointer("load_matrix_sync", p, ldm, sizeof(float));
  for (int e = int(strata_emu::lane_id()); e < 256; e += 32) {
    const int r = e / 16, c = e % 16;
    f.v[r][c] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
  }
  detail::meet("load_matrix_sync");
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ldm,
                              layout_t layout) {
  detail::check_pointer("store_matrix_sync", p, ldm, sizeof(float));
  detail::meet("store_matrix_sync");
  for (int e = int(strata_emu::lane_id()); e < 256; e += 32) {
    const int r = e / 16, c = e % 16;
    (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.v[r][c];
  }
}
template <class Use, class T, class Layout>
inline void fill_fragment(fragment<Use, 16, 16, 16, T, Layout>& f, float x) {
  for (auto& row : f.v)
    for (auto& e : row) e = x;
}
// d = a b + c with fp32 sums (bf16 products are exact in fp32).
template <class LA, class LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float>& d,
                     const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LA>& a,
                     const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LB>& b,
                     const fragment<accumulator, 16, 16, 16, float>& c) {
  detail::meet("mma_sync");
  for (int e = int(strata_emu::lane_id()); e < 256; e += 32) {  // d may be c: each element reads only itself
    const int r = e / 16, n = e % 16;
    float acc = c.v[r][n];
    for (int k = 0; k < 16; ++k) acc = fmaf(a.v[r][k], b.v[k][n], acc);
    d.v[r][n] = acc;
  }
}
}  // namespace nvcuda::wmma
