#pragma once
// WMMA (nvcuda::wmma) for the CPU emulator: bf16 16x16x16 tiles with fp32 accumulators, the subset
// the attention kernels use. A fragment holds its whole tile in every lane (the GPU spreads it over
// the warp in an unspecified layout, so kernels may not index fragment elements). Every operation is
// a warp collective (all 32 lanes must take part, with the same operation), and the GPU's alignment
// rules are checked: pointers 32-byte aligned, ldm a multiple of 16 bytes (8 bf16 / 4 floats).
//   load:  each lane reads the whole tile at its own time, then meets the others;
//   mma:   the lanes meet, then each computes the product (fp32 sums of exact bf16 products);
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
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c)
      f.v[r][c] = __bfloat162float(std::is_same_v<Layout, row_major> ? p[r * ldm + c] : p[c * ldm + r]);
  detail::meet("load_matrix_sync");
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p, unsigned ldm,
                             layout_t layout) {
  detail::check_pointer("load_matrix_sync", p, ldm, sizeof(float));
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) f.v[r][c] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
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
  float out[16][16];
  for (int r = 0; r < 16; ++r) {
    for (int n = 0; n < 16; ++n) out[r][n] = c.v[r][n];
    for (int k = 0; k < 16; ++k) {
      const float ar = a.v[r][k];
      for (int n = 0; n < 16; ++n) out[r][n] = fmaf(ar, b.v[k][n], out[r][n]);
    }
  }
  std::memcpy(d.v, out, sizeof(out));
}
}  // namespace nvcuda::wmma
