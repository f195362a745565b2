// CUDA runtime plumbing: errors, stream, cuBLASLt handle, device memory (runtime.h, memory.h).
#include "kernels/cuda/runtime.h"

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <string>

namespace strata::cuda {

void fail_cuda(const char* file, int line, const char* expr, cudaError_t err) {
  fail_at(file, line, fmt::format("{}: {} ({})", expr, cudaGetErrorString(err), cudaGetErrorName(err)));
}

void fail_cublas(const char* file, int line, const char* expr, cublasStatus_t st) {
  fail_at(file, line, fmt::format("{}: cuBLAS status {} ({})", expr, int(st), cublasLtGetStatusString(st)));
}

namespace {
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

struct Blas {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
};

Blas& blas() {
  static Blas b;
  static std::once_flag once;
  std::call_once(once, [] {
    CUBLAS_CHECK(cublasLtCreate(&b.handle));
    CUDA_CHECK(cudaMalloc(&b.workspace, kCublasLtWorkspaceBytes));
  });
  return b;
}
}  // namespace

cudaStream_t current_stream() { return g_stream; }
void set_current_stream(cudaStream_t s) { g_stream = s; }

cublasLtHandle_t cublaslt_handle() { return blas().handle; }
void* cublaslt_workspace() { return blas().workspace; }

bool device_available() { return availability().ok; }
std::string unavailable_reason() { return availability().reason; }

DeviceInfo device_info() {
  int dev = 0, clock_khz = 0, bus_bits = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  // Attributes rather than cudaDeviceProp fields: CUDA 13 dropped cudaDeviceProp::memoryClockRate.
  CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, dev));
  DeviceInfo d;
  d.name = prop.name;
  d.peak_gbs = 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
  return d;
}

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
  if (bytes) CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, current_stream()));
}

void copy_to_device(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, current_stream()));
  CUDA_CHECK(cudaStreamSynchronize(current_stream()));
}

void copy_to_host(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, current_stream()));
  CUDA_CHECK(cudaStreamSynchronize(current_stream()));
}

void copy_on_device(void* dst, const void* src, size_t bytes) {
  if (bytes) CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, current_stream()));
}

namespace {
thread_local ScratchPool* g_pool = nullptr;

bool stream_recording(cudaStream_t stream) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  CUDA_CHECK(cudaStreamIsCapturing(stream, &st));
  return st != cudaStreamCaptureStatusNone;
}
}  // namespace

void set_scratch_pool(ScratchPool* pool) { g_pool = pool; }

ScratchPool::~ScratchPool() { free(base_); }

void ScratchPool::grow() {
  if (high_water_ <= capacity_) return;
  CUDA_CHECK(cudaDeviceSynchronize());  // the old block may still be in use by queued work
  free(base_);
  base_ = nullptr;
  capacity_ = 0;
  base_ = static_cast<char*>(alloc(high_water_));
  capacity_ = high_water_;
}

void* ScratchPool::take(size_t bytes, bool recording) {
  const size_t at = (used_ + 255) / 256 * 256;  // cuBLASLt and vector loads want aligned scratch
  used_ = at + bytes;
  high_water_ = std::max(high_water_, used_);
  if (used_ <= capacity_) return base_ + at;
  exhausted_ = recording;
  STRATA_CHECK(!recording, "CUDA graph scratch pool exhausted while recording ({} of {} bytes)", used_, capacity_);
  return nullptr;
}

DeviceBuffer::DeviceBuffer(size_t bytes, cudaStream_t stream) : bytes_(bytes), stream_(stream) {
  if (!bytes) return;
  if (g_pool) {
    ptr_ = g_pool->take(bytes, stream_recording(stream));
    pooled_ = ptr_ != nullptr;
    if (pooled_) return;
  }
  CUDA_CHECK(cudaMallocAsync(&ptr_, bytes, stream));
}

// No throw from a destructor: a failure here means the context is already broken, and the next
// checked call reports it. Pooled memory is released by the pool's reset.
DeviceBuffer::~DeviceBuffer() {
  if (ptr_ && !pooled_) cudaFreeAsync(ptr_, stream_);
}

void synchronize() { CUDA_CHECK(cudaStreamSynchronize(current_stream())); }

}  // namespace strata::cuda
