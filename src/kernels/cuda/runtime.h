#pragma once
// The CUDA backend's shared plumbing, for .cu files: error checks that throw strata::Error with
// file:line, the stream every op queues on, the cuBLASLt handle and its workspace, and small launch
// helpers. Host-only code uses kernels/cuda/memory.h instead (no CUDA types there).
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/error.h"
#include "kernels/cuda/memory.h"

namespace strata::cuda {

[[noreturn]] void fail_cuda(const char* file, int line, const char* expr, cudaError_t err);
[[noreturn]] void fail_cublas(const char* file, int line, const char* expr, cublasStatus_t st);

// The stream every op is queued on (the legacy default stream unless set; per host thread).
cudaStream_t current_stream();
void set_current_stream(cudaStream_t s);

// One cuBLASLt handle per process (created on first use for the current device) and a workspace
// for its algorithms (cuBLAS recommends 32 MiB on Hopper; enough for Ampere too).
cublasLtHandle_t cublaslt_handle();
void* cublaslt_workspace();
constexpr size_t kCublasLtWorkspaceBytes = size_t(32) << 20;

// Scratch memory for one op, stream-ordered (cudaMallocAsync / cudaFreeAsync from the device's
// memory pool): allocated and released on `stream`, so it is reused without synchronising and is
// safe to drop as soon as the kernels using it are queued.
class DeviceBuffer {
 public:
  DeviceBuffer(size_t bytes, cudaStream_t stream);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  cudaStream_t stream_ = nullptr;
};

// Blocks of 256 threads covering n elements, the grid capped so a grid-stride loop finishes it.
constexpr int kBlock1d = 256;
inline unsigned grid_1d(int64_t n, int threads = kBlock1d) {
  int64_t g = (n + threads - 1) / threads;
  if (g < 1) g = 1;
  if (g > 65535LL * 32) g = 65535LL * 32;
  return unsigned(g);
}

}  // namespace strata::cuda

// CUDA_CHECK(cudaMemcpy(...)) -> throws strata::Error "cudaMemcpy(...): <reason> (file:line)".
#define CUDA_CHECK(expr)                                                                      \
  do {                                                                                        \
    cudaError_t strata_cuda_err_ = (expr);                                                    \
    if (strata_cuda_err_ != cudaSuccess) ::strata::cuda::fail_cuda(__FILE__, __LINE__, #expr, strata_cuda_err_); \
  } while (0)
#define CUBLAS_CHECK(expr)                                                                    \
  do {                                                                                        \
    cublasStatus_t strata_cublas_st_ = (expr);                                                \
    if (strata_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                           \
      ::strata::cuda::fail_cublas(__FILE__, __LINE__, #expr, strata_cublas_st_);              \
  } while (0)
// After a kernel launch: launch-configuration errors surface here (execution errors surface at the
// next synchronising call).
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
