#pragma once
// The CUDA backend's shared plumbing, for .cu files: error checks that throw strata::Error with
// file:line, the cuBLASLt handle and its workspace, stream-ordered scratch, and small launch helpers.
// Device memory and the stream every op queues on (current_stream) are core's (core/device_cuda.h);
// host-only code uses that header directly (no CUDA types there).
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/device_cuda.h"
#include "core/error.h"
#include "kernels/cuda/launch.cuh"

namespace strata::cuda {

[[noreturn]] void fail_cuda(const char* file, int line, const char* expr, cudaError_t err);
[[noreturn]] void fail_cublas(const char* file, int line, const char* expr, cublasStatus_t st);

// current_stream() / set_current_stream(): core/device_cuda.h (cudaStream_t is CUstream_st*).

// One cuBLASLt handle per process (created on first use for the current device; cuBLASLt calls may
// share it from several threads).
cublasLtHandle_t cublaslt_handle();

// What each stream owns (kernels/cuda/stream_state.cu), created on the stream's first use and freed
// by release_stream() or at exit:
// - a cuBLASLt workspace (cuBLAS recommends 32 MiB on Hopper; enough for Ampere too). An algorithm
//   uses its workspace for the whole product, so two streams running GEMMs at once must not share
//   one; a graph recorded on a stream holds that stream's workspace and keeps it for its replays.
// - a device error record: where kernels recorded into a CUDA graph report a bad index (see
//   IndexCheck in kernels/cuda/index_check.cuh), read back by synchronize_checked().
void* cublaslt_workspace(cudaStream_t stream);
constexpr size_t kCublasLtWorkspaceBytes = size_t(32) << 20;
// Creates `stream`'s resources now. A stream that will be recorded into a graph must be prepared
// first: memory cannot be allocated while the stream is being recorded.
void prepare_stream(cudaStream_t stream);
// Waits for `stream`, then frees its resources (before cudaStreamDestroy: a later stream may reuse
// the handle). A no-op for a stream that has none.
void release_stream(cudaStream_t stream);
// Waits for `stream`; throws strata::Error naming the first bad index a recorded kernel reported on
// it since the last check (the record is then cleared, so the stream stays usable).
void synchronize_checked(cudaStream_t stream);

// Scratch memory for one op, stream-ordered (cudaMallocAsync / cudaFreeAsync from the device's
// memory pool): allocated and released on `stream`, so it is reused without synchronising and is
// safe to drop as soon as the kernels using it are queued.
//
// While a ScratchPool is installed on this thread (a CUDA graph being recorded or replayed, see
// graph.h), the memory comes from the pool instead: addresses that repeat from one recording to the
// next, and no allocation node in the graph (cudaGraphExecUpdate cannot update those).
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
  bool pooled_ = false;
};

// A bump allocator over one device allocation, reset before each recording. Requests beyond the
// capacity fall back to stream-ordered allocation while not recording (the high-water mark is noted
// so that grow() can make room before the next recording) and throw while recording, which abandons
// that recording (the caller then runs the work directly).
class ScratchPool {
 public:
  ScratchPool() = default;
  ~ScratchPool();
  ScratchPool(const ScratchPool&) = delete;
  ScratchPool& operator=(const ScratchPool&) = delete;
  void reset() { used_ = 0, exhausted_ = false; }
  bool exhausted() const { return exhausted_; }  // a request was refused while recording
  // To the high-water mark; `user` is the stream whose work used the pool (waited for when the
  // block is replaced). Never while recording.
  void grow(cudaStream_t user);
  void* take(size_t bytes, bool recording);  // nullptr: not in the pool (only when not recording)
  size_t capacity() const { return capacity_; }

 private:
  char* base_ = nullptr;
  size_t capacity_ = 0, used_ = 0, high_water_ = 0;
  bool exhausted_ = false;
};
// Installs `pool` for this thread's DeviceBuffers (nullptr uninstalls).
void set_scratch_pool(ScratchPool* pool);

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
