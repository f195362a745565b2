#pragma once
// Runs CUDA kernel source on the CPU, for tests on machines without a GPU: every CUDA thread is a
// std::thread, a block's threads meet at a std::barrier for __syncthreads, a warp's at another for
// __syncwarp and the shuffles (values exchanged through a per-block buffer). Blocks run one after
// another. Include this before a kernel header that keeps CUDA runtime calls out (such as
// kernels/cuda/attention_kernels.cuh); only the builtins those kernels use are provided:
// threadIdx / blockIdx / blockDim / gridDim, dynamic (STRATA_DYNAMIC_SMEM) and static __shared__
// memory, __syncthreads, __syncwarp, __shfl_xor_sync on floats, float4, uint4, the float math of
// <math.h> (exp2f here is the exact host function, not the GPU's 2-ulp approximation), bf16
// (__nv_bfloat16 and its conversions) and the WMMA API for bf16 16x16x16 tiles (nvcuda::wmma):
// fill / load / store / mma on fragments. A fragment here holds its whole tile in every lane (the
// GPU spreads it over the warp in an unspecified layout, which is why kernels may not index
// fragment elements: these tests would not see such code), so loads and mma are per lane and
// stores are done once per warp between warp barriers.
//
// It checks what can be wrong in a kernel's source: index math, bounds, masking, the order of
// reductions, the barrier protocol (a thread skipping a barrier the others reach deadlocks here
// too; exited threads drop out, as on the GPU). Shared memory is a heap buffer of exactly the
// launch's size and global memory is host vectors, so the AddressSanitizer build reports any
// out-of-range access. It is no hardware model: no timing, bank conflicts, register limits or
// shared-memory capacity, and a missing barrier shows only when the OS interleaves threads badly.
#include <math.h>

#include <algorithm>
#include <barrier>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// A static local is one object for every thread of the launch; blocks run one at a time.
#define __shared__ static
#define STRATA_DYNAMIC_SMEM(T, name) T* name = reinterpret_cast<T*>(::strata_emu::block().smem.get())

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
struct __attribute__((may_alias, aligned(16))) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
struct __attribute__((may_alias, aligned(16))) uint4 {
  unsigned x, y, z, w;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

// bf16: the top half of an fp32, rounded to nearest even (as cuda_bf16.h's __float2bfloat16).
struct __nv_bfloat16 {
  uint16_t bits;
};
inline __nv_bfloat16 __float2bfloat16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {uint16_t((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return {uint16_t(u >> 16)};
}
inline float __bfloat162float(__nv_bfloat16 h) {
  const uint32_t u = uint32_t(h.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
using std::max;  // CUDA's integer min / max overloads
using std::min;

namespace strata_emu {

struct Block {
  Block(int threads, size_t smem_bytes)
      : sync(threads), shfl(size_t(threads)), smem(new unsigned char[std::max<size_t>(smem_bytes, 1)]) {
    for (int w = 0; w < (threads + 31) / 32; ++w)
      warps.push_back(std::make_unique<std::barrier<>>(std::min(32, threads - 32 * w)));
  }
  std::barrier<> sync;
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  std::vector<float> shfl;               // one slot per thread for the shuffles
  std::unique_ptr<unsigned char[]> smem;  // new[] is aligned for any fundamental type (16 bytes here)
};
inline thread_local Block* g_block = nullptr;
inline Block& block() { return *g_block; }
inline std::barrier<>& warp() { return *g_block->warps[threadIdx.x / 32]; }

// kernel<<<grid, threads, smem>>>(args...), synchronously.
template <class... P, class... A>
void launch(dim3 grid, int threads, size_t smem, void (*kernel)(P...), const A&... args) {
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        Block blk(threads, smem);
        std::vector<std::thread> team;
        team.reserve(size_t(threads));
        for (int t = 0; t < threads; ++t)
          team.emplace_back([&, t] {
            threadIdx = {unsigned(t), 0, 0};
            blockIdx = {x, y, z};
            blockDim = {unsigned(threads), 1, 1};
            gridDim = grid;
            g_block = &blk;
            kernel(args...);
            // An exited thread no longer counts at the barriers, as on the GPU.
            blk.sync.arrive_and_drop();
            warp().arrive_and_drop();
          });
        for (auto& th : team) th.join();
      }
}

}  // namespace strata_emu

inline void __syncthreads() { strata_emu::block().sync.arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { strata_emu::warp().arrive_and_wait(); }
// Full-warp xor shuffle: every lane publishes its value, then reads its partner's.
inline float __shfl_xor_sync(unsigned, float v, int lane_mask) {
  auto& b = strata_emu::block();
  const unsigned t = threadIdx.x, base = t & ~31u;
  b.shfl[t] = v;
  strata_emu::warp().arrive_and_wait();
  const float r = b.shfl[base + ((t & 31u) ^ unsigned(lane_mask))];
  strata_emu::warp().arrive_and_wait();  // nobody overwrites a slot before its partner has read it
  return r;
}

// WMMA for 16x16x16 tiles: matrix_a (16x16, row- or col-major in memory), matrix_b, fp32 accumulator.
namespace nvcuda::wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  float v[16][16];  // the whole tile, [row][col], in every lane
};

template <class Use, class T, class Layout>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const __nv_bfloat16* p, unsigned ldm) {
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c)
      f.v[r][c] = __bfloat162float(std::is_same_v<Layout, row_major> ? p[r * ldm + c] : p[c * ldm + r]);
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p, unsigned ldm,
                             layout_t layout) {
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) f.v[r][c] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ldm,
                              layout_t layout) {
  strata_emu::warp().arrive_and_wait();  // every lane holds the same tile: one lane writes it
  if (threadIdx.x % 32 == 0)
    for (int r = 0; r < 16; ++r)
      for (int c = 0; c < 16; ++c) (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.v[r][c];
  strata_emu::warp().arrive_and_wait();
}
template <class T>
inline void fill_fragment(fragment<accumulator, 16, 16, 16, T>& f, float x) {
  for (auto& row : f.v)
    for (auto& e : row) e = x;
}
// d = a b + c with fp32 sums (bf16 products are exact in fp32).
template <class LA, class LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LA>& a,
                     const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LB>& b,
                     const fragment<accumulator, 16, 16, 16, float>& c) {
  float out[16][16];
  for (int r = 0; r < 16; ++r)
    for (int n = 0; n < 16; ++n) {
      float acc = c.v[r][n];
      for (int k = 0; k < 16; ++k) acc += a.v[r][k] * b.v[k][n];
      out[r][n] = acc;
    }
  std::memcpy(d.v, out, sizeof(out));
}
}  // namespace nvcuda::wmma
