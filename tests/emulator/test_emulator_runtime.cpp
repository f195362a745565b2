// The CPU emulator's own tests (runtime half): the allocation registry and its errors, modelled
// asynchrony (nothing runs before something waits for it; a missing event or the legacy / non-blocking
// rule shows as a wrong result under some interleaving seed), events, stream capture (nodes, launch,
// update, CUDA's prohibited calls invalidating the capture), device properties and errors, cuBLASLt
// against a double-precision reference, and cub's radix sort. Device work here is host closures
// queued through strata_emu::enqueue, the seam kernels launch through.
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <cub/cub.cuh>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "runtime_internal.h"

namespace {

void on(cudaStream_t s, std::function<void()> f) { strata_emu::enqueue(s, "test work", std::move(f)); }

cudaStream_t make_stream(unsigned flags) {
  cudaStream_t s = nullptr;
  EXPECT_EQ(cudaStreamCreateWithFlags(&s, flags), cudaSuccess);
  return s;
}

struct Dev {  // a device buffer freed on scope exit
  void* p = nullptr;
  explicit Dev(size_t bytes) { EXPECT_EQ(cudaMalloc(&p, bytes), cudaSuccess); }
  ~Dev() { EXPECT_EQ(cudaFree(p), cudaSuccess); }
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

// ---- memory ----

TEST(EmulatorRuntime, MallocIsAlignedUninitialisedAndRegistered) {
  Dev d(1000);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(d.p) % 256, 0u);
  float first;
  ASSERT_EQ(cudaMemcpy(&first, d.p, sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_TRUE(std::isnan(first)) << "cudaMalloc memory is uninitialised: the emulator fills it with NaN";
  EXPECT_TRUE(strata_emu::device_range_live(d.p, 1000));
  EXPECT_FALSE(strata_emu::device_range_live(d.p, 1001));
  EXPECT_FALSE(strata_emu::device_range_live(&first, 4));
}

TEST(EmulatorRuntime, RegistryErrors) {
  cudaGetLastError();
  int host = 0;
  EXPECT_EQ(cudaFree(&host), cudaErrorInvalidValue);
  EXPECT_EQ(cudaPeekAtLastError(), cudaErrorInvalidValue);  // failing calls set the last error
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // and reading it resets it
  EXPECT_EQ(cudaFree(nullptr), cudaSuccess);
  Dev d(64);
  std::vector<char> h(128);
  // Past the allocation's end, into host memory, or with the wrong direction.
  EXPECT_EQ(cudaMemcpy(d.p, h.data(), 65, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(h.data(), h.data() + 64, 8, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(d.p, h.data(), 8, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemset(d.as<char>() + 60, 0, 8), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(d.as<char>() + 8, h.data(), 56, cudaMemcpyHostToDevice), cudaSuccess);
  // cudaMemcpyDefault finds the direction from the registry.
  h[0] = 42;
  ASSERT_EQ(cudaMemcpy(d.p, h.data(), 1, cudaMemcpyDefault), cudaSuccess);
  h[0] = 0;
  ASSERT_EQ(cudaMemcpy(h.data(), d.p, 1, cudaMemcpyDefault), cudaSuccess);
  EXPECT_EQ(h[0], 42);
  cudaGetLastError();
}

TEST(EmulatorRuntimeDeath, QueuedCopyIntoFreedMemoryFaults) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        cudaStream_t s = make_stream(cudaStreamNonBlocking);
        void* p = nullptr;
        cudaMallocAsync(&p, 64, s);
        cudaFreeAsync(p, s);
        std::vector<char> h(64);
        cudaMemcpyAsync(p, h.data(), 64, cudaMemcpyHostToDevice, s);  // still live at the call
        cudaStreamSynchronize(s);
      },
      "not inside one live allocation");
}

TEST(EmulatorRuntimeDeath, WritePastTheEndShowsAtFree) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        void* p = nullptr;
        cudaMalloc(&p, 100);
        on(nullptr, [p] { static_cast<char*>(p)[100] = 1; });
        cudaFree(p);
      },
      "out of bounds");
}

// ---- asynchrony ----

TEST(EmulatorRuntime, WorkRunsOnlyWhenWaitedFor) {
  cudaStream_t s = make_stream(cudaStreamNonBlocking);
  int ran = 0;
  on(s, [&] { ran = 1; });
  EXPECT_EQ(ran, 0) << "queued work must not run at enqueue";
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(ran, 1);
  cudaStreamDestroy(s);
}

TEST(EmulatorRuntime, HostToDeviceAsyncStagesPageableSourceAtTheCall) {
  cudaStream_t s = make_stream(cudaStreamNonBlocking);
  Dev d(sizeof(int));
  int h = 7;
  ASSERT_EQ(cudaMemcpyAsync(d.p, &h, sizeof(int), cudaMemcpyHostToDevice, s), cudaSuccess);
  h = 8;  // allowed: the source was staged
  int back = 0;
  // Device-to-host into pageable memory returns with the copy done.
  ASSERT_EQ(cudaMemcpyAsync(&back, d.p, sizeof(int), cudaMemcpyDeviceToHost, s), cudaSuccess);
  EXPECT_EQ(back, 7);
  cudaStreamDestroy(s);
}

// Producer on stream a, consumer on stream b; `wait` orders them with an event. Returns how many of
// `seeds` interleavings the consumer saw the producer's value.
int consumer_sees_producer(unsigned flags_a, unsigned flags_b, bool use_event, bool legacy_consumer, int seeds) {
  int good = 0;
  for (int seed = 0; seed < seeds; ++seed) {
    strata_emu::rt::set_seed(uint64_t(seed));
    cudaStream_t a = make_stream(flags_a), b = legacy_consumer ? nullptr : make_stream(flags_b);
    cudaEvent_t e;
    cudaEventCreateWithFlags(&e, cudaEventDisableTiming);
    int x = 0, seen = -1;
    on(a, [&] { x = 1; });
    if (use_event) {
      cudaEventRecord(e, a);
      cudaStreamWaitEvent(b, e, 0);
    }
    on(b, [&] { seen = x; });
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    good += seen == 1;
    cudaEventDestroy(e);
    cudaStreamDestroy(a);
    if (b) cudaStreamDestroy(b);
  }
  return good;
}

TEST(EmulatorRuntime, MissingEventShowsAsAWrongResultForSomeSeed) {
  const int seeds = 32;
  EXPECT_LT(consumer_sees_producer(cudaStreamNonBlocking, cudaStreamNonBlocking, false, false, seeds), seeds)
      << "two unordered streams must interleave both ways for some seed";
  EXPECT_EQ(consumer_sees_producer(cudaStreamNonBlocking, cudaStreamNonBlocking, true, false, seeds), seeds);
  // Two blocking streams are not ordered with each other either, only with the legacy stream.
  EXPECT_LT(consumer_sees_producer(cudaStreamDefault, cudaStreamDefault, false, false, seeds), seeds);
}

TEST(EmulatorRuntime, LegacyStreamOrdersBlockingStreamsButNotNonBlockingOnes) {
  const int seeds = 32;
  EXPECT_EQ(consumer_sees_producer(cudaStreamDefault, 0, false, true, seeds), seeds);
  EXPECT_LT(consumer_sees_producer(cudaStreamNonBlocking, 0, false, true, seeds), seeds);
  // And the other way round: a blocking stream waits for the legacy stream's earlier work.
  for (unsigned flags : {unsigned(cudaStreamDefault), unsigned(cudaStreamNonBlocking)}) {
    int good = 0;
    for (int seed = 0; seed < seeds; ++seed) {
      strata_emu::rt::set_seed(uint64_t(seed));
      cudaStream_t b = make_stream(flags);
      int x = 0, seen = -1;
      on(nullptr, [&] { x = 1; });
      on(b, [&] { seen = x; });
      cudaDeviceSynchronize();
      good += seen == 1;
      cudaStreamDestroy(b);
    }
    if (flags == cudaStreamDefault)
      EXPECT_EQ(good, seeds);
    else
      EXPECT_LT(good, seeds);
  }
}

TEST(EmulatorRuntime, SynchronousCopyDoesNotWaitForANonBlockingStream) {
  // cudaMemcpy is a legacy-stream operation: it waits for blocking streams' work only.
  for (unsigned flags : {unsigned(cudaStreamDefault), unsigned(cudaStreamNonBlocking)}) {
    cudaStream_t s = make_stream(flags);
    Dev d(4);
    ASSERT_EQ(cudaMemsetAsync(d.p, 1, 4, s), cudaSuccess);
    unsigned char h[4] = {};
    ASSERT_EQ(cudaMemcpy(h, d.p, 4, cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(h[0], flags == cudaStreamDefault ? 1 : 0xff);
    cudaStreamSynchronize(s);
    cudaStreamDestroy(s);
  }
}

TEST(EmulatorRuntime, EventsSynchronizeQueryAndTime) {
  cudaStream_t s = make_stream(cudaStreamNonBlocking);
  cudaEvent_t a, b, untimed;
  ASSERT_EQ(cudaEventCreate(&a), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&b), cudaSuccess);
  ASSERT_EQ(cudaEventCreateWithFlags(&untimed, cudaEventDisableTiming), cudaSuccess);
  int step = 0;
  ASSERT_EQ(cudaEventRecord(a, s), cudaSuccess);
  on(s, [&] { step = 1; });
  ASSERT_EQ(cudaEventRecord(b, s), cudaSuccess);
  on(s, [&] { step = 2; });
  float ms = -1;
  EXPECT_EQ(cudaEventElapsedTime(&ms, a, b), cudaErrorNotReady);
  ASSERT_EQ(cudaEventSynchronize(b), cudaSuccess);
  EXPECT_EQ(step, 1) << "an event waits for the work before it, not after";
  ASSERT_EQ(cudaEventElapsedTime(&ms, a, b), cudaSuccess);
  EXPECT_GE(ms, 0.0f);
  ASSERT_EQ(cudaEventRecord(untimed, s), cudaSuccess);
  EXPECT_EQ(cudaEventQuery(untimed), cudaSuccess);
  EXPECT_EQ(step, 2);
  EXPECT_EQ(cudaEventElapsedTime(&ms, a, untimed), cudaErrorInvalidResourceHandle);
  cudaGetLastError();
  cudaEventDestroy(a), cudaEventDestroy(b), cudaEventDestroy(untimed);
  EXPECT_EQ(cudaEventDestroy(a), cudaErrorInvalidResourceHandle);
  cudaGetLastError();
  cudaStreamDestroy(s);
}

TEST(EmulatorRuntime, TwoHostThreadsDrainTwoStreamsConcurrently) {
  // Stream a's work waits for stream b's, which another thread runs: only real concurrency ends it.
  cudaStream_t a = make_stream(cudaStreamNonBlocking), b = make_stream(cudaStreamNonBlocking);
  std::atomic<bool> b_ran{false}, a_saw{false};
  on(a, [&] {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!b_ran && std::chrono::steady_clock::now() < until) std::this_thread::yield();
    a_saw = b_ran.load();
  });
  on(b, [&] { b_ran = true; });
  std::thread ta([&] { cudaStreamSynchronize(a); });
  std::thread tb([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    cudaStreamSynchronize(b);
  });
  ta.join();
  tb.join();
  EXPECT_TRUE(a_saw);
  cudaStreamDestroy(a), cudaStreamDestroy(b);
}

TEST(EmulatorRuntime, LongQueuesAreRunDown) {
  cudaStream_t s = make_stream(cudaStreamNonBlocking);
  int n = 0;
  for (int i = 0; i < 5000; ++i) on(s, [&] { ++n; });
  EXPECT_GT(n, 0);
  cudaStreamSynchronize(s);
  EXPECT_EQ(n, 5000);
  cudaStreamDestroy(s);
}

// ---- capture and graphs ----

struct Capturing {
  cudaStream_t s;
  explicit Capturing(unsigned flags = cudaStreamNonBlocking,
                     cudaStreamCaptureMode mode = cudaStreamCaptureModeThreadLocal)
      : s(make_stream(flags)) {
    EXPECT_EQ(cudaStreamBeginCapture(s, mode), cudaSuccess);
  }
  ~Capturing() {
    cudaStreamCaptureStatus st;
    if (cudaStreamIsCapturing(s, &st) == cudaSuccess && st != cudaStreamCaptureStatusNone) {
      cudaGraph_t g = nullptr;
      cudaStreamEndCapture(s, &g);
      if (g) cudaGraphDestroy(g);
    }
    cudaStreamDestroy(s);
    cudaGetLastError();
  }
  cudaGraph_t end(cudaError_t expect = cudaSuccess) {
    cudaGraph_t g = nullptr;
    EXPECT_EQ(cudaStreamEndCapture(s, &g), expect);
    return g;
  }
};

TEST(EmulatorRuntime, CaptureInstantiateLaunchUpdate) {
  std::vector<int> log;
  cudaGraph_t g;
  {
    Capturing c;
    cudaStreamCaptureStatus st;
    ASSERT_EQ(cudaStreamIsCapturing(c.s, &st), cudaSuccess);
    EXPECT_EQ(st, cudaStreamCaptureStatusActive);
    on(c.s, [&] { log.push_back(1); });
    on(c.s, [&] { log.push_back(2); });
    g = c.end();
    ASSERT_NE(g, nullptr);
    EXPECT_TRUE(log.empty()) << "captured work must not run";
  }
  size_t n = 0;
  ASSERT_EQ(cudaGraphGetNodes(g, nullptr, &n), cudaSuccess);
  EXPECT_EQ(n, 2u);
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, g, 0), cudaSuccess);
  cudaStream_t s = make_stream(cudaStreamNonBlocking);
  ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
  EXPECT_TRUE(log.empty());
  cudaStreamSynchronize(s);
  EXPECT_EQ(log, (std::vector<int>{1, 2, 1, 2}));

  // Same topology, new parameters: updated.
  cudaGraph_t g2;
  {
    Capturing c;
    on(c.s, [&] { log.push_back(3); });
    on(c.s, [&] { log.push_back(4); });
    g2 = c.end();
  }
  cudaGraphExecUpdateResultInfo info{};
  ASSERT_EQ(cudaGraphExecUpdate(exec, g2, &info), cudaSuccess);
  EXPECT_EQ(info.result, cudaGraphExecUpdateSuccess);
  log.clear();
  cudaGraphLaunch(exec, s);
  cudaStreamSynchronize(s);
  EXPECT_EQ(log, (std::vector<int>{3, 4}));

  // Another node count, another node kind, a memory node: refused, with CUDA's reasons.
  Dev d(16);
  cudaGraph_t g3, g4, g5;
  {
    Capturing c;
    on(c.s, [] {});
    g3 = c.end();
  }
  {
    Capturing c;
    on(c.s, [] {});
    cudaMemsetAsync(d.p, 0, 16, c.s);
    g4 = c.end();
  }
  {
    Capturing c;
    void* p = nullptr;
    ASSERT_EQ(cudaMallocAsync(&p, 64, c.s), cudaSuccess);  // an allocation node: allowed in capture
    EXPECT_TRUE(strata_emu::device_range_live(p, 64));
    ASSERT_EQ(cudaFreeAsync(p, c.s), cudaSuccess);
    g5 = c.end();
  }
  ASSERT_EQ(cudaGraphExecUpdate(exec, g3, &info), cudaErrorGraphExecUpdateFailure);
  EXPECT_EQ(info.result, cudaGraphExecUpdateErrorTopologyChanged);
  ASSERT_EQ(cudaGraphExecUpdate(exec, g4, &info), cudaErrorGraphExecUpdateFailure);
  EXPECT_EQ(info.result, cudaGraphExecUpdateErrorNodeTypeChanged);
  ASSERT_EQ(cudaGraphExecUpdate(exec, g5, &info), cudaErrorGraphExecUpdateFailure);
  EXPECT_EQ(info.result, cudaGraphExecUpdateErrorNotSupported);
  EXPECT_EQ(cudaGetLastError(), cudaErrorGraphExecUpdateFailure);
  // The graph with memory nodes still instantiates and runs.
  cudaGraphExec_t exec5;
  ASSERT_EQ(cudaGraphInstantiate(&exec5, g5, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec5, s), cudaSuccess);
  cudaStreamSynchronize(s);
  for (cudaGraph_t x : {g, g2, g3, g4, g5}) EXPECT_EQ(cudaGraphDestroy(x), cudaSuccess);
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
  EXPECT_EQ(cudaGraphExecDestroy(exec5), cudaSuccess);
  cudaStreamDestroy(s);
}

TEST(EmulatorRuntime, SynchronisingTheCapturingStreamInvalidatesTheCapture) {
  Capturing c;
  int ran = 0;
  on(c.s, [&] { ran = 1; });
  EXPECT_EQ(cudaStreamSynchronize(c.s), cudaErrorStreamCaptureUnsupported);
  cudaStreamCaptureStatus st;
  ASSERT_EQ(cudaStreamIsCapturing(c.s, &st), cudaSuccess);
  EXPECT_EQ(st, cudaStreamCaptureStatusInvalidated);
  cudaGetLastError();
  on(c.s, [&] { ran = 2; });
  EXPECT_EQ(cudaGetLastError(), cudaErrorStreamCaptureInvalidated) << "a launch into an invalidated capture fails";
  EXPECT_EQ(c.end(cudaErrorStreamCaptureInvalidated), nullptr);
  EXPECT_EQ(ran, 0);
}

TEST(EmulatorRuntime, ProhibitedCallsDuringCapture) {
  void* p = nullptr;
  Dev d(16);
  char h[16];
  // Each of these, made by the capturing thread (thread-local mode), is refused and invalidates.
  std::vector<std::pair<const char*, std::function<cudaError_t()>>> calls = {
      {"cudaMalloc", [&] { return cudaMalloc(&p, 16); }},
      {"cudaFree", [&] { return cudaFree(d.p); }},
      {"cudaMemcpy", [&] { return cudaMemcpy(h, d.p, 16, cudaMemcpyDeviceToHost); }},
      {"cudaMemset", [&] { return cudaMemset(d.p, 0, 16); }},
      {"cudaDeviceSynchronize", [&] { return cudaDeviceSynchronize(); }},
  };
  for (auto& [name, call] : calls) {
    Capturing c;
    EXPECT_EQ(call(), cudaErrorStreamCaptureUnsupported) << name;
    c.end(cudaErrorStreamCaptureInvalidated);
  }
  // Relaxed mode allows the potentially unsafe ones.
  {
    Capturing c(cudaStreamNonBlocking, cudaStreamCaptureModeRelaxed);
    ASSERT_EQ(cudaMalloc(&p, 16), cudaSuccess);
    ASSERT_EQ(cudaFree(p), cudaSuccess);
    cudaGraph_t g = c.end();
    cudaGraphDestroy(g);
  }
}

TEST(EmulatorRuntime, CaptureModesAcrossThreads) {
  void* p = nullptr;
  {  // thread-local: another thread may allocate
    Capturing c(cudaStreamNonBlocking, cudaStreamCaptureModeThreadLocal);
    cudaError_t e = cudaErrorUnknown;
    std::thread([&] { e = cudaMalloc(&p, 16); }).join();
    EXPECT_EQ(e, cudaSuccess);
    cudaFree(p);  // no longer unsafe for this thread? it is: thread-local capture on this thread
    cudaGetLastError();
  }
  {  // global: another thread may not
    Capturing c(cudaStreamNonBlocking, cudaStreamCaptureModeGlobal);
    cudaError_t e = cudaSuccess;
    std::thread([&] { e = cudaMalloc(&p, 16); }).join();
    EXPECT_EQ(e, cudaErrorStreamCaptureUnsupported);
    c.end(cudaErrorStreamCaptureInvalidated);
  }
  {  // ending a thread-local capture from another thread is refused
    Capturing c;
    cudaError_t e = cudaSuccess;
    std::thread([&] {
      cudaGraph_t g = nullptr;
      e = cudaStreamEndCapture(c.s, &g);
    }).join();
    EXPECT_EQ(e, cudaErrorStreamCaptureWrongThread);
    cudaGraph_t g = c.end();
    cudaGraphDestroy(g);
  }
}

TEST(EmulatorRuntime, LegacyStreamWhileABlockingStreamCaptures) {
  {
    Capturing c(cudaStreamDefault);
    on(nullptr, [] {});
    EXPECT_EQ(cudaGetLastError(), cudaErrorStreamCaptureImplicit);
    cudaStreamCaptureStatus st;
    EXPECT_EQ(cudaStreamIsCapturing(nullptr, &st), cudaErrorStreamCaptureImplicit);
    c.end(cudaErrorStreamCaptureInvalidated);
  }
  {  // a non-blocking stream's capture does not involve the legacy stream
    Capturing c(cudaStreamNonBlocking);
    int ran = 0;
    on(nullptr, [&] { ran = 1; });
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(nullptr), cudaSuccess);
    EXPECT_EQ(ran, 1);
    cudaGraph_t g = c.end();
    EXPECT_NE(g, nullptr);
    cudaGraphDestroy(g);
  }
}

TEST(EmulatorRuntime, CapturedEventsJoinStreamsAndCannotBeWaitedOnFromTheHost) {
  cudaEvent_t fork, join;
  cudaEventCreateWithFlags(&fork, cudaEventDisableTiming);
  cudaEventCreateWithFlags(&join, cudaEventDisableTiming);
  cudaStream_t side = make_stream(cudaStreamNonBlocking);
  std::vector<int> log;
  cudaGraph_t g;
  {
    Capturing c;
    on(c.s, [&] { log.push_back(1); });
    ASSERT_EQ(cudaEventRecord(fork, c.s), cudaSuccess);
    ASSERT_EQ(cudaStreamWaitEvent(side, fork, 0), cudaSuccess);
    cudaStreamCaptureStatus st;
    cudaStreamIsCapturing(side, &st);
    EXPECT_EQ(st, cudaStreamCaptureStatusActive) << "waiting on a captured event joins the capture";
    on(side, [&] { log.push_back(2); });
    ASSERT_EQ(cudaEventRecord(join, side), cudaSuccess);
    ASSERT_EQ(cudaStreamWaitEvent(c.s, join, 0), cudaSuccess);
    g = c.end();
    ASSERT_NE(g, nullptr);
    cudaStreamIsCapturing(side, &st);
    EXPECT_EQ(st, cudaStreamCaptureStatusNone);
  }
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, g, 0), cudaSuccess);
  cudaGraphLaunch(exec, nullptr);
  cudaDeviceSynchronize();
  EXPECT_EQ(log, (std::vector<int>{1, 2}));
  {
    Capturing c;
    cudaEventRecord(fork, c.s);
    EXPECT_EQ(cudaEventQuery(fork), cudaErrorCapturedEvent);
    c.end(cudaErrorStreamCaptureInvalidated);
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(g);
  cudaEventDestroy(fork), cudaEventDestroy(join);
  cudaStreamDestroy(side);
  cudaGetLastError();
}

// ---- device and errors ----

TEST(EmulatorRuntime, DevicePropertiesAttributesAndErrors) {
  int n = 0, dev = -1;
  ASSERT_EQ(cudaGetDeviceCount(&n), cudaSuccess);
  EXPECT_EQ(n, 1);
  ASSERT_EQ(cudaGetDevice(&dev), cudaSuccess);
  EXPECT_EQ(dev, 0);
  EXPECT_EQ(cudaSetDevice(1), cudaErrorInvalidDevice);
  cudaDeviceProp p{};
  ASSERT_EQ(cudaGetDeviceProperties(&p, 0), cudaSuccess);
  EXPECT_STREQ(p.name, "strata CPU emulator (sm_90 model)");
  EXPECT_EQ(p.major, 9);
  EXPECT_EQ(p.multiProcessorCount, 132);
  EXPECT_EQ(p.sharedMemPerBlock, 48u * 1024);
  EXPECT_EQ(p.sharedMemPerBlockOptin, 227u * 1024);
  int clock = 0, bus = 0, sms = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&clock, cudaDevAttrMemoryClockRate, 0), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&bus, cudaDevAttrGlobalMemoryBusWidth, 0), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), cudaSuccess);
  const double gbs = 2.0 * clock * 1e3 * (bus / 8.0) / 1e9;
  EXPECT_GT(gbs, 3000);  // H100 SXM: about 3.35 TB/s
  EXPECT_LT(gbs, 3500);
  EXPECT_EQ(sms, 132);
  static int kernel_tag;
  EXPECT_EQ(strata_emu::max_dynamic_smem(&kernel_tag), 48u * 1024);
  EXPECT_EQ(cudaFuncSetAttribute(&kernel_tag, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024), cudaSuccess);
  EXPECT_EQ(strata_emu::max_dynamic_smem(&kernel_tag), 100u * 1024);
  EXPECT_EQ(cudaFuncSetAttribute(&kernel_tag, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 * 1024),
            cudaErrorInvalidValue);
  EXPECT_STREQ(cudaGetErrorString(cudaErrorInvalidValue), "invalid argument");
  EXPECT_STREQ(cudaGetErrorName(cudaErrorStreamCaptureInvalidated), "cudaErrorStreamCaptureInvalidated");
  EXPECT_STREQ(cudaGetErrorString(cudaErrorStreamCaptureUnsupported), "operation not permitted when stream is capturing");
  cudaGetLastError();
}

// ---- cuBLASLt ----

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
float from_bf16(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
double tf32(double x) {
  float f = float(x);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u = (u + 0x1000u) & 0xffffe000u;
  std::memcpy(&f, &u, 4);
  return f;
}

struct Lt {
  cublasLtHandle_t h = nullptr;
  Lt() { EXPECT_EQ(cublasLtCreate(&h), CUBLAS_STATUS_SUCCESS); }
  ~Lt() { cublasLtDestroy(h); }
};

// One column-major product through cuBLASLt. `type` for A and B; D (and C) fp32 unless d_bf16.
struct Case {
  bool ta = false, tb = false;
  int64_t m = 5, n = 7, k = 33, pad = 0;  // pad: ld = rows + pad
  float alpha = 1.0f, beta = 0.0f;
  cudaDataType_t type = CUDA_R_32F;
  bool d_bf16 = false, tf32 = false;
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
};

// Returns the max relative error against the double reference (over max |ref|).
// ref_tf32: round the reference's operands to tf32 (-1: as the case computes).
double run_case(const Case& c, uint64_t workspace_bytes = 1 << 20, int ref_tf32 = -1) {
  const bool round_ref = ref_tf32 < 0 ? c.tf32 : ref_tf32 != 0;
  Lt lt;
  std::mt19937 rng(uint32_t(c.m * 131 + c.n * 7 + c.k));
  std::uniform_real_distribution<float> U(-1.0f, 1.0f);
  const int64_t a_rows = c.ta ? c.k : c.m, a_cols = c.ta ? c.m : c.k;
  const int64_t b_rows = c.tb ? c.n : c.k, b_cols = c.tb ? c.k : c.n;
  const int64_t lda = a_rows + c.pad, ldb = b_rows + c.pad, ldc = c.m + c.pad;
  const size_t es = c.type == CUDA_R_16BF ? 2 : 4, ds = c.d_bf16 ? 2 : 4;
  std::vector<double> A(size_t(lda * a_cols)), B(size_t(ldb * b_cols)), Cm(size_t(ldc * c.n)), bias(size_t(c.m));
  std::vector<char> ha(A.size() * es), hb(B.size() * es), hc(Cm.size() * ds), hbias(bias.size() * ds);
  auto fill = [&](std::vector<double>& v, std::vector<char>& h, bool bf) {
    for (size_t i = 0; i < v.size(); ++i) {
      float f = U(rng);
      if (bf) {
        const uint16_t b16 = to_bf16(f);
        f = from_bf16(b16);
        std::memcpy(h.data() + 2 * i, &b16, 2);
      } else {
        std::memcpy(h.data() + 4 * i, &f, 4);
      }
      v[i] = f;
    }
  };
  fill(A, ha, c.type == CUDA_R_16BF);
  fill(B, hb, c.type == CUDA_R_16BF);
  fill(Cm, hc, c.d_bf16);
  fill(bias, hbias, c.d_bf16);
  Dev da(ha.size()), db(hb.size()), dd(hc.size()), dbias(hbias.size()), ws(workspace_bytes ? workspace_bytes : 1);
  cudaMemcpy(da.p, ha.data(), ha.size(), cudaMemcpyHostToDevice);
  cudaMemcpy(db.p, hb.data(), hb.size(), cudaMemcpyHostToDevice);
  cudaMemcpy(dbias.p, hbias.data(), hbias.size(), cudaMemcpyHostToDevice);
  if (c.beta != 0.0f) cudaMemcpy(dd.p, hc.data(), hc.size(), cudaMemcpyHostToDevice);  // else C stays NaN garbage

  const cudaDataType_t dtype = c.d_bf16 ? CUDA_R_16BF : CUDA_R_32F;
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulPreference_t pref;
  EXPECT_EQ(cublasLtMatmulDescCreate(&op, c.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUDA_R_32F),
            CUBLAS_STATUS_SUCCESS);
  const cublasOperation_t ta = c.ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = c.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta));
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb));
  const uint32_t epi = c.epi;
  EXPECT_EQ(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)), CUBLAS_STATUS_SUCCESS);
  const void* bias_ptr = dbias.p;
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr, sizeof(bias_ptr));
  cublasLtMatrixLayoutCreate(&la, c.type, uint64_t(a_rows), uint64_t(a_cols), lda);
  cublasLtMatrixLayoutCreate(&lb, c.type, uint64_t(b_rows), uint64_t(b_cols), ldb);
  cublasLtMatrixLayoutCreate(&lc, dtype, uint64_t(c.m), uint64_t(c.n), ldc);
  cublasLtMatmulPreferenceCreate(&pref);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes,
                                       sizeof(workspace_bytes));
  cublasLtMatmulHeuristicResult_t r{};
  int count = 0;
  EXPECT_EQ(cublasLtMatmulAlgoGetHeuristic(lt.h, op, la, lb, lc, lc, pref, 1, &r, &count), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(count, 1);
  EXPECT_LE(r.workspaceSize, workspace_bytes);
  cudaStream_t s = make_stream(cudaStreamNonBlocking);
  EXPECT_EQ(cublasLtMatmul(lt.h, op, &c.alpha, da.p, la, db.p, lb, &c.beta, dd.p, lc, dd.p, lc, &r.algo, ws.p,
                           workspace_bytes, s),
            CUBLAS_STATUS_SUCCESS);
  std::vector<char> out(hc.size());
  cudaMemcpyAsync(out.data(), dd.p, out.size(), cudaMemcpyDeviceToHost, s);
  cudaStreamDestroy(s);
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(lb), cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatmulDescDestroy(op);

  double worst = 0, scale = 1e-30;
  for (int64_t j = 0; j < c.n; ++j)
    for (int64_t i = 0; i < c.m; ++i) {
      double acc = 0;
      for (int64_t q = 0; q < c.k; ++q) {
        double a = c.ta ? A[size_t(q + i * lda)] : A[size_t(i + q * lda)];
        double b = c.tb ? B[size_t(j + q * ldb)] : B[size_t(q + j * ldb)];
        if (round_ref) a = tf32(a), b = tf32(b);
        acc += a * b;
      }
      double v = c.alpha * acc + (c.beta != 0.0f ? c.beta * Cm[size_t(i + j * ldc)] : 0.0);
      if (c.epi & CUBLASLT_EPILOGUE_BIAS) v += bias[size_t(i)];
      if (c.epi == CUBLASLT_EPILOGUE_RELU_BIAS || c.epi == CUBLASLT_EPILOGUE_RELU) v = v > 0 ? v : 0;
      if (c.epi == CUBLASLT_EPILOGUE_GELU || c.epi == CUBLASLT_EPILOGUE_GELU_BIAS)
        v = 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
      float got;
      if (c.d_bf16) {
        uint16_t h16;
        std::memcpy(&h16, out.data() + 2 * size_t(i + j * ldc), 2);
        got = from_bf16(h16);
      } else {
        std::memcpy(&got, out.data() + 4 * size_t(i + j * ldc), 4);
      }
      if (!std::isfinite(got)) return INFINITY;
      worst = std::max(worst, std::fabs(got - v));
      scale = std::max(scale, std::fabs(v));
    }
  return worst / scale;
}

TEST(EmulatorCublasLt, MatchesDoubleReferenceOnTransposesLdsBetaEpiloguesAndTypes) {
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int64_t pad : {0, 3}) {
        Case c;
        c.ta = ta, c.tb = tb, c.pad = pad;
        EXPECT_LT(run_case(c), 1e-6) << ta << tb << pad;
        c.beta = 0.5f, c.alpha = -2.0f;
        EXPECT_LT(run_case(c), 1e-6) << "beta " << ta << tb << pad;
      }
  for (cublasLtEpilogue_t e : {CUBLASLT_EPILOGUE_BIAS, CUBLASLT_EPILOGUE_RELU_BIAS, CUBLASLT_EPILOGUE_GELU_BIAS,
                               CUBLASLT_EPILOGUE_RELU}) {
    Case c;
    c.epi = e, c.ta = true, c.beta = 1.0f;
    EXPECT_LT(run_case(c), 1e-6) << "epilogue " << int(e);
  }
  Case bf;
  bf.type = CUDA_R_16BF, bf.tb = true;
  EXPECT_LT(run_case(bf), 1e-6) << "bf16 inputs, fp32 accumulate and output";
  bf.d_bf16 = true, bf.beta = 1.0f, bf.epi = CUBLASLT_EPILOGUE_BIAS;
  EXPECT_LT(run_case(bf), 8e-3) << "bf16 output (rounded)";
  Case t;
  t.tf32 = true, t.k = 200;
  EXPECT_LT(run_case(t), 1e-6) << "tf32-rounded operands";
  EXPECT_GT(run_case(t, 1 << 20, 0), 1e-5) << "tf32 really rounds: off the full-precision product";
  // Without a workspace (none allowed), the same answer.
  Case nows;
  nows.k = 100;
  EXPECT_LT(run_case(nows, 0), 1e-6);
}

TEST(EmulatorCublasLt, RefusesBadDescriptorsAndWorkspaces) {
  Lt lt;
  Dev a(4096), b(4096), d(4096), ws(1 << 16);
  cudaMemset(a.p, 0, 4096), cudaMemset(b.p, 0, 4096);  // finite operands: the partials are not NaN bytes
  cublasLtMatmulDesc_t op;
  cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  cublasLtMatmulPreference_t pref;
  cublasLtMatmulPreferenceCreate(&pref);
  const uint64_t wsb = 1 << 16;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof(wsb));
  auto layout = [](cudaDataType_t t, uint64_t r, uint64_t c, int64_t ld) {
    cublasLtMatrixLayout_t l;
    cublasLtMatrixLayoutCreate(&l, t, r, c, ld);
    return l;
  };
  const float one = 1.0f, zero = 0.0f;
  cublasLtMatmulHeuristicResult_t r{};
  int count = 0;
  auto heur = [&](cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t lc) {
    return cublasLtMatmulAlgoGetHeuristic(lt.h, op, la, lb, lc, lc, pref, 1, &r, &count);
  };
  auto mm = [&](cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t lc, const void* A,
                void* wsp, size_t wss) {
    return cublasLtMatmul(lt.h, op, &one, A, la, b.p, lb, &zero, d.p, lc, d.p, lc, &r.algo, wsp, wss, nullptr);
  };
  auto A = layout(CUDA_R_32F, 8, 32, 8), B = layout(CUDA_R_32F, 32, 4, 32), C = layout(CUDA_R_32F, 8, 4, 8);
  ASSERT_EQ(heur(A, B, C), CUBLAS_STATUS_SUCCESS);
  ASSERT_GT(r.workspaceSize, 0u) << "the emulated algorithm splits K through the workspace";
  EXPECT_EQ(mm(A, B, C, a.p, nullptr, wsb), CUBLAS_STATUS_INVALID_VALUE) << "null workspace";
  EXPECT_EQ(mm(A, B, C, a.p, ws.p, r.workspaceSize - 4), CUBLAS_STATUS_NOT_SUPPORTED) << "workspace too small";
  EXPECT_EQ(mm(A, B, C, a.as<char>() + 4, ws.p, wsb), CUBLAS_STATUS_NOT_SUPPORTED) << "less aligned than the algo";
  EXPECT_EQ(mm(A, B, C, a.p, ws.p, wsb), CUBLAS_STATUS_SUCCESS);
  // The workspace was really written.
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<unsigned char> hw(r.workspaceSize);
  cudaMemcpy(hw.data(), ws.p, hw.size(), cudaMemcpyDeviceToHost);
  size_t changed = 0;
  for (unsigned char c : hw) changed += c != 0xff;
  EXPECT_GT(changed, hw.size() / 2);
  // ld below rows, inconsistent shapes, mixed types.
  auto bad_ld = layout(CUDA_R_32F, 8, 32, 7);
  EXPECT_EQ(heur(bad_ld, B, C), CUBLAS_STATUS_INVALID_VALUE);
  auto bad_k = layout(CUDA_R_32F, 31, 4, 32);
  EXPECT_EQ(heur(A, bad_k, C), CUBLAS_STATUS_INVALID_VALUE);
  auto bf = layout(CUDA_R_16BF, 32, 4, 32);
  EXPECT_EQ(heur(A, bf, C), CUBLAS_STATUS_NOT_SUPPORTED);
  // An operand less aligned than its element: no algorithm.
  const uint32_t two = 2;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &two, sizeof(two));
  EXPECT_EQ(heur(A, B, C), CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(count, 0);
  // Attribute sizes are checked.
  const int32_t t = CUBLAS_OP_T;
  EXPECT_EQ(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &t, 2), CUBLAS_STATUS_INVALID_VALUE);
  for (auto l : {A, B, C, bad_ld, bad_k, bf}) cublasLtMatrixLayoutDestroy(l);
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatmulDescDestroy(op);
  EXPECT_STREQ(cublasLtGetStatusString(CUBLAS_STATUS_NOT_SUPPORTED), "the functionality requested is not supported");
}

TEST(EmulatorCublasLt, MatmulIsQueuedAndCaptured) {
  Lt lt;
  Dev a(64 * 4), b(64 * 4), d(64 * 4);
  std::vector<float> ones(64, 1.0f);
  cudaMemcpy(a.p, ones.data(), 256, cudaMemcpyHostToDevice);
  cudaMemcpy(b.p, ones.data(), 256, cudaMemcpyHostToDevice);
  cublasLtMatmulDesc_t op;
  cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, 8, 8, 8);
  cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, 8, 8, 8);
  cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, 8, 8, 8);
  const float one = 1.0f, zero = 0.0f;
  cudaGraph_t g;
  {
    Capturing c;
    ASSERT_EQ(cublasLtMatmul(lt.h, op, &one, a.p, la, b.p, lb, &zero, d.p, lc, d.p, lc, nullptr, nullptr, 0, c.s),
              CUBLAS_STATUS_SUCCESS);
    g = c.end();
  }
  float h = 0;
  cudaMemcpy(&h, d.p, 4, cudaMemcpyDeviceToHost);
  EXPECT_TRUE(std::isnan(h)) << "captured, not run";
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, g, 0), cudaSuccess);
  cudaGraphLaunch(exec, nullptr);
  cudaMemcpy(&h, d.p, 4, cudaMemcpyDeviceToHost);
  EXPECT_EQ(h, 8.0f);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(g);
  cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(lb), cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatmulDescDestroy(op);
}

// Two host threads, two streams, one product each, over and over: with one workspace between them
// the partial products overwrite each other (as on a GPU); with a workspace each, never.
int corrupted_runs(bool shared_workspace, int max_iterations) {
  Lt lt;
  const int m = 96, n = 96, k = 256;
  cublasLtMatmulDesc_t op;
  cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, m, k, m);
  cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, k, n, k);
  cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, m, n, m);
  const size_t wsb = 4 * size_t(m) * n * sizeof(float);
  Dev ws0(wsb), ws1(wsb);
  std::atomic<int> bad{0};
  auto worker = [&](int t) {
    cudaStream_t s = make_stream(cudaStreamNonBlocking);
    Dev a(size_t(m) * k * 4), b(size_t(k) * n * 4), d(size_t(m) * n * 4);
    std::vector<float> ha(size_t(m) * k, 0.5f + float(t)), hb(size_t(k) * n, 1.0f), hd(size_t(m) * n);
    cudaMemcpy(a.p, ha.data(), ha.size() * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(b.p, hb.data(), hb.size() * 4, cudaMemcpyHostToDevice);
    const float one = 1, zero = 0;
    void* ws = shared_workspace || t == 0 ? ws0.p : ws1.p;
    for (int it = 0; it < max_iterations && (!shared_workspace || bad == 0); ++it) {
      cublasLtMatmul(lt.h, op, &one, a.p, la, b.p, lb, &zero, d.p, lc, d.p, lc, nullptr, ws, wsb, s);
      cudaMemcpyAsync(hd.data(), d.p, hd.size() * 4, cudaMemcpyDeviceToHost, s);
      for (float v : hd)
        if (v != (0.5f + float(t)) * k) {
          ++bad;
          break;
        }
    }
    cudaStreamDestroy(s);
  };
  std::thread t0(worker, 0), t1(worker, 1);
  t0.join(), t1.join();
  cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(lb), cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatmulDescDestroy(op);
  return bad;
}

TEST(EmulatorCublasLt, SharedWorkspaceBetweenThreadsCorruptsOwnWorkspacesDoNot) {
  EXPECT_EQ(corrupted_runs(false, 20), 0);
  EXPECT_GT(corrupted_runs(true, 300), 0) << "two products sharing a workspace on two threads must collide";
}

// ---- cub radix sort ----

template <class K>
void sort_and_check(const std::vector<K>& keys, int begin_bit, int end_bit, bool numeric) {
  const int n = int(keys.size());
  std::vector<int> vals(keys.size());
  for (int i = 0; i < n; ++i) vals[size_t(i)] = i;
  Dev kin(keys.size() * sizeof(K)), kout(keys.size() * sizeof(K)), vin(vals.size() * 4), vout(vals.size() * 4);
  cudaMemcpy(kin.p, keys.data(), keys.size() * sizeof(K), cudaMemcpyHostToDevice);
  cudaMemcpy(vin.p, vals.data(), vals.size() * 4, cudaMemcpyHostToDevice);
  size_t temp_bytes = 0;
  ASSERT_EQ(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, kin.as<K>(), kout.as<K>(), vin.as<int>(),
                                            vout.as<int>(), n, begin_bit, end_bit),
            cudaSuccess);
  ASSERT_GT(temp_bytes, 0u);
  Dev temp(temp_bytes);
  size_t short_bytes = temp_bytes - 1;
  EXPECT_EQ(cub::DeviceRadixSort::SortPairs(temp.p, short_bytes, kin.as<K>(), kout.as<K>(), vin.as<int>(),
                                            vout.as<int>(), n, begin_bit, end_bit),
            cudaErrorInvalidValue);
  cudaGetLastError();
  ASSERT_EQ(cub::DeviceRadixSort::SortPairs(temp.p, temp_bytes, kin.as<K>(), kout.as<K>(), vin.as<int>(),
                                            vout.as<int>(), n, begin_bit, end_bit),
            cudaSuccess);
  std::vector<K> ko(keys.size());
  std::vector<int> vo(keys.size());
  cudaMemcpy(ko.data(), kout.p, ko.size() * sizeof(K), cudaMemcpyDeviceToHost);
  cudaMemcpy(vo.data(), vout.p, vo.size() * 4, cudaMemcpyDeviceToHost);
  // The reference: a stable sort by the same key bits.
  auto bits = [&](K k) {
    uint64_t u = uint64_t(cub::strata_detail::twiddle(k));
    const uint64_t width = end_bit - begin_bit;
    return (u >> begin_bit) & (width >= 64 ? ~0ull : ((1ull << width) - 1));
  };
  std::vector<int> order(keys.size());
  for (int i = 0; i < n; ++i) order[size_t(i)] = i;
  std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return bits(keys[size_t(x)]) < bits(keys[size_t(y)]); });
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(vo[size_t(i)], order[size_t(i)]) << "position " << i;
    ASSERT_EQ(ko[size_t(i)], keys[size_t(order[size_t(i)])]);
    if (numeric && i > 0) {
      ASSERT_LE(ko[size_t(i - 1)], ko[size_t(i)]);
    }
  }
  // The temp storage was used.
  std::vector<unsigned char> ht(temp_bytes);
  cudaMemcpy(ht.data(), temp.p, temp_bytes, cudaMemcpyDeviceToHost);
  size_t changed = 0;
  for (unsigned char c : ht) changed += c != 0xff;
  EXPECT_GT(changed, 0u);
}

TEST(EmulatorCub, RadixSortIsStableNumericAndHonoursBitRanges) {
  std::mt19937 rng(5);
  std::vector<int32_t> ik(3000);
  for (auto& k : ik) k = int32_t(rng() % 200) - 100;  // many equal keys, negatives
  sort_and_check(ik, 0, 32, true);                      // negatives first, as cub orders signed keys
  std::vector<int32_t> small(1000);
  for (auto& k : small) k = int32_t(rng() % 1000);
  sort_and_check(small, 0, 4, false);  // only the low 4 bits count: stable within equal digits
  sort_and_check(small, 2, 10, false);
  std::vector<float> fk(700);
  for (auto& k : fk) k = float(int(rng() % 50) - 25) * 0.5f;
  sort_and_check(fk, 0, 32, true);
  std::vector<uint64_t> uk(500);
  for (auto& k : uk) k = (uint64_t(rng()) << 32) | rng() % 7;
  sort_and_check(uk, 0, 64, true);
}

}  // namespace
