// CUDA runtime plumbing for the kernels: errors, cuBLASLt handle, stream-ordered scratch (runtime.h).
// Device memory, availability and the current stream are core's (core/device_cuda.cpp).
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
// The workspaces are per stream (stream_state.cu); the handle is shared.
cublasLtHandle_t blas_handle() {
  static cublasLtHandle_t h = nullptr;
  static std::once_flag once;
  std::call_once(once, [] { CUBLAS_CHECK(cublasLtCreate(&h)); });
  return h;
}
}  // namespace

cublasLtHandle_t cublaslt_handle() { return blas_handle(); }

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

void ScratchPool::grow(cudaStream_t user) {
  if (high_water_ <= capacity_) return;
  // The old block may still be in use by queued work, all of it on `user` (not the whole device:
  // other threads' streams are none of this pool's business).
  CUDA_CHECK(cudaStreamSynchronize(user));
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

}  // namespace strata::cuda
