// Device memory, availability and the current stream on the CUDA runtime (core/device_cuda.h):
// host C++ calling the runtime API, compiled by the host compiler, so core needs no CUDA compiler
// and no kernel. Empty in a build without CUDA (core/device.cpp then refuses Device::cuda).
#ifdef STRATA_WITH_CUDA
#include "core/device_cuda.h"

#include <cuda_runtime.h>

#include <cstdio>

#include "core/error.h"

namespace strata::cuda {

namespace {
[[noreturn]] void fail(const char* file, int line, const char* expr, cudaError_t err) {
  fail_at(file, line, fmt::format("{}: {} ({})", expr, cudaGetErrorString(err), cudaGetErrorName(err)));
}
#define STRATA_CUDART_CHECK(expr)                                       \
  do {                                                                  \
    const cudaError_t strata_err_ = (expr);                             \
    if (strata_err_ != cudaSuccess) fail(__FILE__, __LINE__, #expr, strata_err_); \
  } while (0)

thread_local cudaStream_t g_stream = nullptr;

struct Availability {
  bool ok = false;
  std::string reason;
};

const Availability& availability() {
  static const Availability a = [] {
    Availability r;
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
      r.reason = fmt::format("no CUDA device: {}", cudaGetErrorString(err));
      cudaGetLastError();  // reset the (non-sticky) last error so that later checks do not report it
    } else if (n == 0) {
      r.reason = "no CUDA device: cudaGetDeviceCount found none";
    } else {
      r.ok = true;
    }
    return r;
  }();
  return a;
}
}  // namespace

bool device_available() { return availability().ok; }
std::string unavailable_reason() { return availability().reason; }

DeviceInfo device_info() {
  int dev = 0, clock_khz = 0, bus_bits = 0;
  STRATA_CUDART_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  STRATA_CUDART_CHECK(cudaGetDeviceProperties(&prop, dev));
  // Attributes rather than cudaDeviceProp fields: CUDA 13 dropped cudaDeviceProp::memoryClockRate.
  STRATA_CUDART_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, dev));
  STRATA_CUDART_CHECK(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, dev));
  DeviceInfo d;
  d.name = prop.name;
  d.peak_gbs = 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
  return d;
}

CUstream_st* current_stream() { return g_stream; }
void set_current_stream(CUstream_st* s) { g_stream = s; }

void* alloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess)
    fail_at(__FILE__, __LINE__, fmt::format("cudaMalloc of {} bytes: {}", bytes, cudaGetErrorString(err)));
  return p;
}

// Called from destructors (DeviceArray, Storage, Arena), so it never throws: at process exit the
// runtime may already be unloaded (cudaErrorCudartUnloading), which is harmless; anything else is
// reported on stderr (a sticky error will surface at the next checked call anyway).
void free(void* p) {
  if (!p) return;
  const cudaError_t err = cudaFree(p);
  if (err != cudaSuccess && err != cudaErrorCudartUnloading)
    fmt::print(stderr, "warning: cudaFree: {}\n", cudaGetErrorString(err));
}

void memset_zero(void* p, size_t bytes) {
  if (bytes) STRATA_CUDART_CHECK(cudaMemsetAsync(p, 0, bytes, current_stream()));
}

void copy_to_device(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  STRATA_CUDART_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, current_stream()));
  STRATA_CUDART_CHECK(cudaStreamSynchronize(current_stream()));
}

void copy_to_host(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  STRATA_CUDART_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, current_stream()));
  STRATA_CUDART_CHECK(cudaStreamSynchronize(current_stream()));
}

void copy_on_device(void* dst, const void* src, size_t bytes) {
  if (bytes) STRATA_CUDART_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, current_stream()));
}

void synchronize() { STRATA_CUDART_CHECK(cudaStreamSynchronize(current_stream())); }

}  // namespace strata::cuda
#endif  // STRATA_WITH_CUDA
