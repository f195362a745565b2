#pragma once
// Helpers for the CUDA-vs-CPU twin tests: a skip that names why no device is usable, and a device
// copy of a host vector.
#include <gtest/gtest.h>

#include <vector>

#include "core/device_cuda.h"

namespace strata::testing {

// GTEST_SKIP with the runtime's reason ("no CUDA device: <cudaGetErrorString>").
#define STRATA_SKIP_WITHOUT_CUDA()                                               \
  if (!::strata::cuda::device_available()) GTEST_SKIP() << ::strata::cuda::unavailable_reason()

// A device copy of a host vector (or zeroed storage), freed on scope exit.
template <class T>
struct DeviceVec {
  T* p = nullptr;
  size_t n = 0;
  explicit DeviceVec(size_t n_) : p(static_cast<T*>(cuda::alloc(n_ * sizeof(T)))), n(n_) {
    cuda::memset_zero(p, n * sizeof(T));
  }
  explicit DeviceVec(const std::vector<T>& h) : DeviceVec(h.size()) {
    cuda::copy_to_device(p, h.data(), n * sizeof(T));
  }
  DeviceVec(const DeviceVec&) = delete;
  DeviceVec& operator=(const DeviceVec&) = delete;
  ~DeviceVec() { cuda::free(p); }
  std::vector<T> host() const {
    std::vector<T> h(n);
    cuda::copy_to_host(h.data(), p, n * sizeof(T));
    return h;
  }
};

}  // namespace strata::testing
