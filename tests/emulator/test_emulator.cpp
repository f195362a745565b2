// The CPU emulator's own tests (execution half): barriers, exited threads, warp collectives with
// their mask rules, deadlock detection, shared memory (per block, capacity, garbage, overrun), launch
// configuration errors, alignment, atomics, block interleaving, several host threads, determinism.
// Faults abort the process, so they are death tests.
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <mma.h>

#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

#include "kernels/cuda/launch.cuh"

namespace {

void sync() { ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess); }

// ---- barriers ----
__global__ void rotate_kernel(int* out, int rounds) {
  STRATA_SHARED(int, buf, [256]);
  const int t = int(threadIdx.x), n = int(blockDim.x);
  int v = t + 1000 * int(blockIdx.x);
  for (int r = 0; r < rounds; ++r) {
    buf[t] = v;
    __syncthreads();
    v = buf[(t + 1) % n];
    __syncthreads();
  }
  out[blockIdx.x * blockDim.x + t] = v;
}

TEST(Emulator, BarrierOrdersSharedMemoryAndStaticSharedIsPerBlock) {
  const int blocks = 12, threads = 256, rounds = 5;
  std::vector<int> out(blocks * threads, -1);
  STRATA_LAUNCH((blocks, threads, 0, nullptr), rotate_kernel)(out.data(), rounds);
  sync();
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < threads; ++t) ASSERT_EQ(out[b * threads + t], (t + rounds) % threads + 1000 * b) << b << " " << t;
}

// rotate_kernel without its barriers: threads read their neighbour's slot before it is written.
__global__ void racy_rotate_kernel(int* out) {
  STRATA_SHARED(int, buf, [256]);
  const int t = int(threadIdx.x);
  buf[t] = t;
  atomicAdd(out + 256, 0);  // a switch point now and then, as a real kernel has
  out[t] = buf[(t + 1) % 256];
}

TEST(Emulator, MissingBarrierShows) {
  std::vector<int> out(257, 0);
  STRATA_LAUNCH((1, 256, 0, nullptr), racy_rotate_kernel)(out.data());
  sync();
  int wrong = 0;
  for (int t = 0; t < 256; ++t) wrong += out[size_t(t)] != (t + 1) % 256;
  EXPECT_GT(wrong, 0) << "threads ran in an order that hid the race";
}

__global__ void exit_early_kernel(int* out) {
  STRATA_SHARED(int, s, [1]);
  if (threadIdx.x % 3 == 0) return;  // exited threads drop out of the barrier (sm_70+)
  if (threadIdx.x == 1) s[0] = 42;
  __syncthreads();
  out[threadIdx.x] = s[0];
  __syncthreads();
}

TEST(Emulator, ExitedThreadsDropOutOfBarriers) {
  std::vector<int> out(96, 0);
  STRATA_LAUNCH((1, 96, 0, nullptr), exit_early_kernel)(out.data());
  sync();
  for (int t = 0; t < 96; ++t) EXPECT_EQ(out[t], t % 3 == 0 ? 0 : 42) << t;
}

// ---- warp collectives ----
template <class T>
__global__ void shuffle_kernel(T* out) {
  const int lane = int(threadIdx.x) % 32;
  const T v = T(lane * 3 + 1);
  T* o = out + 5 * threadIdx.x;
  o[0] = __shfl_xor_sync(0xffffffffu, v, 5);
  o[1] = __shfl_up_sync(0xffffffffu, v, 3);
  o[2] = __shfl_down_sync(0xffffffffu, v, 2, 16);
  o[3] = __shfl_sync(0xffffffffu, v, 7, 8);
  o[4] = T(__ballot_sync(0xffffffffu, lane % 3 == 0) == 0x49249249u && __any_sync(0xffffffffu, lane == 9) &&
           !__all_sync(0xffffffffu, lane < 31));
}

template <class T>
void check_shuffles() {
  std::vector<T> out(64 * 5);
  STRATA_LAUNCH((1, 64, 0, nullptr), shuffle_kernel<T>)(out.data());
  sync();
  auto val = [](int l) { return T(l * 3 + 1); };
  for (int t = 0; t < 64; ++t) {
    const int l = t % 32;
    EXPECT_EQ(out[5 * t + 0], val(l ^ 5));
    EXPECT_EQ(out[5 * t + 1], val(l >= 3 ? l - 3 : l));
    EXPECT_EQ(out[5 * t + 2], val(l % 16 + 2 < 16 ? l + 2 : l));
    EXPECT_EQ(out[5 * t + 3], val(l / 8 * 8 + 7));
    EXPECT_EQ(out[5 * t + 4], T(1));
  }
}

TEST(Emulator, ShufflesOfEveryType) {
  check_shuffles<float>();
  check_shuffles<double>();
  check_shuffles<int>();
  check_shuffles<unsigned>();
  check_shuffles<int64_t>();
  check_shuffles<unsigned long long>();
}

// The lower half-warp reduces among itself; the upper half exits first.
__global__ void half_warp_kernel(float* out, unsigned mask, int xor_lane) {
  if (threadIdx.x >= 16) return;
  float v = float(threadIdx.x);
  v += __shfl_xor_sync(mask, v, xor_lane);
  out[threadIdx.x] = v;
}

TEST(Emulator, PartialWarpMaskRightPasses) {
  std::vector<float> out(16);
  STRATA_LAUNCH((1, 32, 0, nullptr), half_warp_kernel)(out.data(), 0x0000ffffu, 1);
  sync();
  for (int t = 0; t < 16; ++t) EXPECT_EQ(out[t], float(t + (t ^ 1)));
}

using EmulatorDeathTest = ::testing::Test;

TEST(EmulatorDeathTest, PartialWarpMaskNamingExitedLanesFaults) {
  std::vector<float> out(16);
  EXPECT_DEATH(
      {
        STRATA_LAUNCH((1, 32, 0, nullptr), half_warp_kernel)(out.data(), 0xffffffffu, 1);
        cudaDeviceSynchronize();
      },
      "exited|deadlock");
}

TEST(EmulatorDeathTest, ShuffleFromALaneOutsideTheMaskFaults) {
  std::vector<float> out(16);
  EXPECT_DEATH(
      {
        STRATA_LAUNCH((1, 32, 0, nullptr), half_warp_kernel)(out.data(), 0x0000ffffu, 16);
        cudaDeviceSynchronize();
      },
      "not in the mask");
}

__global__ void mixed_mask_kernel(float* out) {
  float v = float(threadIdx.x);
  const unsigned mask = threadIdx.x < 8 ? 0x000000ffu : 0x0000ffffu;  // lanes 0..7 disagree with 8..15
  if (threadIdx.x < 16) out[threadIdx.x] = __shfl_xor_sync(mask, v, 1);
}

TEST(EmulatorDeathTest, LanesWithDifferentMasksFault) {
  std::vector<float> out(16);
  EXPECT_DEATH(
      {
        STRATA_LAUNCH((1, 32, 0, nullptr), mixed_mask_kernel)(out.data());
        cudaDeviceSynchronize();
      },
      "different masks");
}

__global__ void mask_without_self_kernel(float* out) {
  out[threadIdx.x] = __shfl_xor_sync(0xfffffffeu, 1.0f, 1);
}

TEST(EmulatorDeathTest, MaskWithoutTheCallingLaneFaults) {
  std::vector<float> out(32);
  EXPECT_DEATH(
      {
        STRATA_LAUNCH((1, 32, 0, nullptr), mask_without_self_kernel)(out.data());
        cudaDeviceSynchronize();
      },
      "does not include the calling lane");
}

// ---- deadlocks ----
__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x == 17) {
    __syncwarp();  // waits for lanes that wait at __syncthreads for it
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

TEST(EmulatorDeathTest, DeadlockFaultsNamingWhereThreadsWait) {
  std::vector<int> out(256);
  EXPECT_DEATH(
      {
        STRATA_LAUNCH((2, 256, 0, nullptr), divergent_barrier_kernel)(out.data());
        cudaDeviceSynchronize();
      },
      "deadlock.*\n.*255 threads at __syncthreads");
}

// ---- shared memory ----
__global__ void big_static_kernel(float* out) {
  STRATA_SHARED(float, big, [13 * 1024]);  // 52 KiB: over the 48 KiB of static shared memory
  big[threadIdx.x] = 1.0f;
  out[threadIdx.x] = big[threadIdx.x];
}

TEST(EmulatorDeathTest, StaticSharedMemoryOverCapacityFaults) {
  std::vector<float> out(32);
  EXPECT_DEATH(
      {
        STRATA_LAUNCH((1, 32, 0, nullptr), big_static_kernel)(out.data());
        cudaDeviceSynchronize();
      },
      "exceeds");
}

__global__ void dynamic_fill_kernel(float* out, int n, int overrun) {
  STRATA_DYNAMIC_SMEM(float, buf);
  for (int i = int(threadIdx.x); i < n + overrun; i += int(blockDim.x)) buf[i] = float(i % 4);
  __syncthreads();
  float s = 0.0f;
  for (int i = 0; i < n; ++i) s += buf[i];
  out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}

TEST(Emulator, DynamicSharedMemoryOver48KiBNeedsTheAttribute) {
  const int n = 20000;  // 80000 bytes
  std::vector<float> out(64, -1.0f);
  cudaGetLastError();
  STRATA_LAUNCH((2, 32, n * sizeof(float), nullptr), dynamic_fill_kernel)(out.data(), n, 0);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  sync();
  EXPECT_EQ(out[0], -1.0f);  // nothing ran
  ASSERT_EQ(cudaFuncSetAttribute(reinterpret_cast<const void*>(&dynamic_fill_kernel),
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, int(n * sizeof(float))),
            cudaSuccess);
  STRATA_LAUNCH((2, 32, n * sizeof(float), nullptr), dynamic_fill_kernel)(out.data(), n, 0);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  sync();
  for (float v : out) EXPECT_EQ(v, 1.5f * float(n));  // exact: small integers
}

TEST(EmulatorDeathTest, DynamicSharedMemoryOverrunFaultsAtBlockExit) {
  std::vector<float> out(32);
  EXPECT_DEATH(
      {
        STRATA_LAUNCH((1, 32, 100 * sizeof(float), nullptr), dynamic_fill_kernel)(out.data(), 100, 1);
        cudaDeviceSynchronize();
      },
      "past the end of the dynamic shared memory");
}

__global__ void read_uninitialised_kernel(float* out) {
  STRATA_SHARED(float, s, [32]);
  out[threadIdx.x] = s[threadIdx.x];  // never written: garbage, as on the GPU
}

TEST(Emulator, NewSharedMemoryIsGarbage) {
  std::vector<float> out(32, 0.0f);
  STRATA_LAUNCH((1, 32, 0, nullptr), read_uninitialised_kernel)(out.data());
  sync();
  for (float v : out) EXPECT_TRUE(std::isnan(v));
}

// ---- launch configuration ----
__global__ void noop_kernel(int* out) {
  if (out) out[0] = 1;
}

TEST(Emulator, BadLaunchConfigurationsAreErrorsAndRunNothing) {
  int flag = 0;
  cudaGetLastError();
  STRATA_LAUNCH((1, 1025, 0, nullptr), noop_kernel)(&flag);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  STRATA_LAUNCH((dim3(1, 65536), 32, 0, nullptr), noop_kernel)(&flag);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  STRATA_LAUNCH((0, 32, 0, nullptr), noop_kernel)(&flag);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  STRATA_LAUNCH((1, dim3(32, 1, 65), 0, nullptr), noop_kernel)(&flag);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  sync();
  EXPECT_EQ(flag, 0);
  STRATA_LAUNCH((1, dim3(8, 4, 2), 0, nullptr), noop_kernel)(&flag);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  sync();
  EXPECT_EQ(flag, 1);
}

// ---- alignment ----
__global__ void float4_kernel(const float* in, float* out) {
  const float4 v = *reinterpret_cast<const float4*>(in);
  out[threadIdx.x] = v.x + v.y + v.z + v.w;
}

TEST(EmulatorDeathTest, MisalignedFloat4Faults) {
  alignas(16) static float data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<float> out(1);
  STRATA_LAUNCH((1, 1, 0, nullptr), float4_kernel)(data, out.data());
  sync();
  EXPECT_EQ(out[0], 10.0f);
  EXPECT_DEATH(
      {
        STRATA_LAUNCH((1, 1, 0, nullptr), float4_kernel)(data + 1, out.data());
        cudaDeviceSynchronize();
      },
      "misaligned address");
}

__global__ void wmma_kernel(const __nv_bfloat16* a, const __nv_bfloat16* b, float* c, int offset) {
  namespace wmma = nvcuda::wmma;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 1.0f);
  wmma::load_matrix_sync(fa, a + offset, 16);
  wmma::load_matrix_sync(fb, b, 16);
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(c, acc, 16, wmma::mem_row_major);
}

TEST(Emulator, WmmaTileProduct) {
  alignas(32) static __nv_bfloat16 a[256 + 16], b[256];
  alignas(32) static float c[256];
  for (int i = 0; i < 256; ++i) a[i] = __float2bfloat16(float(i % 7) - 3), b[i] = __float2bfloat16(float(i % 5) * 0.5f);
  STRATA_LAUNCH((1, 32, 0, nullptr), wmma_kernel)(a, b, c, 0);
  sync();
  for (int r = 0; r < 16; ++r)
    for (int n = 0; n < 16; ++n) {
      float ref = 1.0f;
      for (int k = 0; k < 16; ++k) ref += __bfloat162float(a[r * 16 + k]) * __bfloat162float(b[n * 16 + k]);
      EXPECT_EQ(c[r * 16 + n], ref) << r << " " << n;
    }
}

TEST(EmulatorDeathTest, WmmaMisalignedPointerFaults) {
  alignas(32) static __nv_bfloat16 a[256 + 16], b[256];
  alignas(32) static float c[256];
  EXPECT_DEATH(
      {
        STRATA_LAUNCH((1, 32, 0, nullptr), wmma_kernel)(a, b, c, 8);  // 16 bytes off
        cudaDeviceSynchronize();
      },
      "not 32-byte");
}

TEST(EmulatorDeathTest, WmmaNeedsTheWholeWarp) {
  alignas(32) static __nv_bfloat16 a[256 + 16], b[256];
  alignas(32) static float c[256];
  EXPECT_DEATH(
      {
        STRATA_LAUNCH((1, 16, 0, nullptr), wmma_kernel)(a, b, c, 0);
        cudaDeviceSynchronize();
      },
      "do not exist");
}

// ---- atomics and block interleaving ----
__global__ void atomics_kernel(float* f, int* i, unsigned* u, unsigned long long* ull, int* mn, int* mx, int* cas) {
  const int t = int(blockIdx.x * blockDim.x + threadIdx.x);
  atomicAdd(f, 0.5f);
  atomicAdd(i, 1);
  atomicAdd(u, 2u);
  atomicAdd(ull, 3ull);
  atomicMin(mn, -t);
  atomicMax(mx, t);
  int old = *cas;  // a CAS loop increment
  while (true) {
    const int seen = atomicCAS(cas, old, old + 1);
    if (seen == old) break;
    old = seen;
  }
}

TEST(Emulator, Atomics) {
  float f = 0.0f;
  int i = 0, mn = 0, mx = 0, cas = 0;
  unsigned u = 0;
  unsigned long long ull = 0;
  STRATA_LAUNCH((8, 128, 0, nullptr), atomics_kernel)(&f, &i, &u, &ull, &mn, &mx, &cas);
  sync();
  EXPECT_EQ(f, 512.0f);
  EXPECT_EQ(i, 1024);
  EXPECT_EQ(u, 2048u);
  EXPECT_EQ(ull, 3072ull);
  EXPECT_EQ(mn, -1023);
  EXPECT_EQ(mx, 1023);
  EXPECT_EQ(cas, 1024);
}

// Block 0 waits for a flag only block 1 sets: it finishes only if the blocks are resident together
// and interleaved (blocks run one after another would spin for ever whenever block 0 went first).
__global__ void handshake_kernel(int* flag, int* seen) {
  if (threadIdx.x != 0) return;
  if (blockIdx.x == 0) {
    long spins = 0;
    while (atomicAdd(flag, 0) == 0)
      if (++spins > 100000000) break;
    seen[0] = atomicAdd(flag, 0);
  } else {
    atomicExch(flag, 1);
  }
}

TEST(Emulator, BlocksInterleave) {
  for (int rep = 0; rep < 20; ++rep) {
    int flag = 0, seen = 0;
    STRATA_LAUNCH((2, 32, 0, nullptr), handshake_kernel)(&flag, &seen);
    sync();
    ASSERT_EQ(seen, 1);
  }
}

// ---- several host threads; determinism ----
TEST(Emulator, GridsOnSeveralHostThreadsAtOnce) {
  std::vector<std::vector<int>> outs(3, std::vector<int>(8 * 256, -1));
  std::vector<std::thread> threads;
  for (int h = 0; h < 3; ++h)
    threads.emplace_back([&, h] {
      cudaStream_t s = nullptr;
      STRATA_LAUNCH((8, 256, 0, s), rotate_kernel)(outs[size_t(h)].data(), 3 + h);
      cudaStreamSynchronize(s);
    });
  for (auto& t : threads) t.join();
  for (int h = 0; h < 3; ++h)
    for (int b = 0; b < 8; ++b)
      for (int t = 0; t < 256; ++t) ASSERT_EQ(outs[size_t(h)][size_t(b * 256 + t)], (t + 3 + h) % 256 + 1000 * b);
}

// Each thread takes a ticket: the tickets record the schedule.
__global__ void ticket_kernel(int* counter, int* tickets) {
  __syncthreads();
  tickets[blockIdx.x * blockDim.x + threadIdx.x] = atomicAdd(counter, 1);
}

std::vector<int> schedule_on_fresh_thread() {
  std::vector<int> tickets(4 * 64);
  std::thread([&] {
    int counter = 0;
    // run_grid directly on this new host thread (launch counter 0): the runtime may run queued work
    // on threads of its own.
    const strata_emu::LaunchConfig cfg{"ticket_kernel", nullptr, dim3(4), dim3(64), 0, nullptr};
    struct Ctx {
      int* counter;
      int* tickets;
    } ctx{&counter, tickets.data()};
    strata_emu::run_grid(
        cfg, [](void* c) { auto* x = static_cast<Ctx*>(c); ticket_kernel(x->counter, x->tickets); }, &ctx);
  }).join();
  return tickets;
}

TEST(Emulator, ScheduleIsRandomButDeterministicForASeed) {
  const std::vector<int> a = schedule_on_fresh_thread(), b = schedule_on_fresh_thread();
  EXPECT_EQ(a, b);
  std::vector<int> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < int(sorted.size()); ++i) ASSERT_EQ(sorted[size_t(i)], i);
  int in_order = 0;  // tickets in thread order would mean no shuffling at all
  for (int i = 0; i < int(a.size()); ++i) in_order += a[size_t(i)] == i;
  EXPECT_LT(in_order, int(a.size()) / 2);
}

}  // namespace
