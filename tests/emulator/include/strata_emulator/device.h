#pragma once
// The device side of the CPU emulator of the CUDA execution model: the builtins a kernel sees
// (threadIdx & co., barriers, warp collectives, atomics, vector types, the qualifiers as macros).
// A CUDA thread is a fiber; the builtin variables are host-thread-local and switched with the fiber
// by the scheduler (execution.cpp), which runs one grid on one host thread. Every barrier, warp
// collective and (at random) atomic is a switch point, where the scheduler picks a random runnable
// fiber among all resident blocks: threads run in random order between barriers, blocks interleave.
#include <math.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "strata_emulator/interface.h"

// ---- qualifiers ----
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __ldg(p) (*(p))

// ---- builtin variables (set by the scheduler for the running fiber) ----
inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
constexpr int warpSize = 32;

// ---- vector types: aligned as on the GPU, so a misaligned access is UB the alignment sanitizer reports ----
#define STRATA_EMU_VEC4(name, T)                                                          \
  struct __attribute__((may_alias, aligned(4 * sizeof(T)))) name { T x, y, z, w; };       \
  inline name make_##name(T x, T y, T z, T w) { return {x, y, z, w}; }
#define STRATA_EMU_VEC2(name, T)                                                          \
  struct __attribute__((may_alias, aligned(2 * sizeof(T)))) name { T x, y; };             \
  inline name make_##name(T x, T y) { return {x, y}; }
STRATA_EMU_VEC4(float4, float)
STRATA_EMU_VEC4(int4, int)
STRATA_EMU_VEC4(uint4, unsigned)
STRATA_EMU_VEC2(float2, float)
STRATA_EMU_VEC2(int2, int)
STRATA_EMU_VEC2(uint2, unsigned)
STRATA_EMU_VEC2(double2, double)
#undef STRATA_EMU_VEC4
#undef STRATA_EMU_VEC2

// CUDA's integer min / max overloads (device code calls them unqualified).
using std::max;
using std::min;

namespace strata_emu {

// A warp collective: every lane of `mask` must arrive at the same kind of collective with the same
// mask; the last to arrive completes it for all. `in` / `out` carry up to 16 bytes per lane.
enum class Coll : uint8_t { syncwarp, shfl, shfl_up, shfl_down, shfl_xor, ballot, any, all, wmma };
void warp_collective(Coll kind, const char* what, unsigned mask, const void* in, size_t n, int arg, int width,
                     void* out);
void syncthreads();
// A switch point with probability 1/4 inside a kernel (nothing outside one): atomics call it so that
// other threads and blocks interleave with them.
void maybe_yield();
// The running fiber's lane and a description of it ("block (1,0,0) thread (17,0,0)") for faults.
unsigned lane_id();
bool in_kernel();

template <class T>
inline T shfl_generic(Coll kind, const char* what, unsigned mask, T v, int arg, int width) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 16, "shuffle of an unsupported type");
  T r;
  warp_collective(kind, what, mask, &v, sizeof(T), arg, width, &r);
  return r;
}

}  // namespace strata_emu

inline void __syncthreads() { strata_emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  strata_emu::warp_collective(strata_emu::Coll::syncwarp, "__syncwarp", mask, nullptr, 0, 0, 32, nullptr);
}
template <class T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  return strata_emu::shfl_generic(strata_emu::Coll::shfl, "__shfl_sync", mask, v, src_lane, width);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return strata_emu::shfl_generic(strata_emu::Coll::shfl_xor, "__shfl_xor_sync", mask, v, lane_mask, width);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return strata_emu::shfl_generic(strata_emu::Coll::shfl_up, "__shfl_up_sync", mask, v, int(delta), width);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return strata_emu::shfl_generic(strata_emu::Coll::shfl_down, "__shfl_down_sync", mask, v, int(delta), width);
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  unsigned r;
  strata_emu::warp_collective(strata_emu::Coll::ballot, "__ballot_sync", mask, &pred, sizeof pred, 0, 32, &r);
  return r;
}
inline int __any_sync(unsigned mask, int pred) {
  int r;
  strata_emu::warp_collective(strata_emu::Coll::any, "__any_sync", mask, &pred, sizeof pred, 0, 32, &r);
  return r;
}
inline int __all_sync(unsigned mask, int pred) {
  int r;
  strata_emu::warp_collective(strata_emu::Coll::all, "__all_sync", mask, &pred, sizeof pred, 0, 32, &r);
  return r;
}
inline unsigned __activemask() { return 0xffffffffu; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(unsigned(x)); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// ---- atomics: real (several host threads may run grids at once), and switch points ----
template <class T>
inline T atomicAdd(T* p, T v) {
  strata_emu::maybe_yield();
  return std::atomic_ref<T>(*p).fetch_add(v);
}
template <class T>
inline T atomicSub(T* p, T v) {
  strata_emu::maybe_yield();
  return std::atomic_ref<T>(*p).fetch_sub(v);
}
template <class T>
inline T atomicExch(T* p, T v) {
  strata_emu::maybe_yield();
  return std::atomic_ref<T>(*p).exchange(v);
}
template <class T>
inline T atomicCAS(T* p, T expected, T desired) {
  strata_emu::maybe_yield();
  std::atomic_ref<T>(*p).compare_exchange_strong(expected, desired);
  return expected;  // the old value, whether or not it was swapped
}
template <class T>
inline T atomicMin(T* p, T v) {
  strata_emu::maybe_yield();
  std::atomic_ref<T> a(*p);
  T old = a.load();
  while (v < old && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}
template <class T>
inline T atomicMax(T* p, T v) {
  strata_emu::maybe_yield();
  std::atomic_ref<T> a(*p);
  T old = a.load();
  while (old < v && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}

// ---- fast-math intrinsics: the accurate host functions (the GPU's are within a few ulp) ----
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
