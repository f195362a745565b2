#pragma once
// Typed scratch buffers and the shared-memory opt-in for the SSM and MoE kernels.
#include <cstdint>

#include "kernels/cuda/runtime.h"

namespace strata::cuda {

// n elements of T of stream-ordered scratch on the current stream (DeviceBuffer in runtime.h).
template <class T>
class Scratch : public DeviceBuffer {
 public:
  explicit Scratch(int64_t n) : DeviceBuffer(sizeof(T) * size_t(n > 0 ? n : 0), current_stream()) {}
  T* get() const { return static_cast<T*>(data()); }
};

// Lets a kernel use more than the default 48 KiB of dynamic shared memory (required from that size on).
template <class Kernel>
void allow_dynamic_smem(Kernel* kernel, size_t bytes) {
  if (bytes > size_t(48) << 10)
    CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(bytes)));
}

}  // namespace strata::cuda
