// CUDA runtime plumbing: errors, stream, cuBLASLt handle, device memory (runtime.h, memory.h).
#include "kernels/cuda/runtime.h"

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

DeviceBuffer::DeviceBuffer(size_t bytes, cudaStream_t stream) : bytes_(bytes), stream_(stream) {
  if (bytes) CUDA_CHECK(cudaMallocAsync(&ptr_, bytes, stream));
}

// No throw from a destructor: a failure here means the context is already broken, and the next
// checked call reports it.
DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFreeAsync(ptr_, stream_);
}

void synchronize() { CUDA_CHECK(cudaStreamSynchronize(current_stream())); }

}  // namespace strata::cuda
