#pragma once
// Where memory lives, and moving it. Host code (tensors, the parameter store, the arena, the model's
// inputs and outputs) allocates and copies through these, so the CPU and CUDA paths share one code
// path; a binary built without CUDA answers every cuda request with a clear error.
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"

namespace strata {

// True when this binary has the CUDA backend and the runtime finds a device.
bool cuda_available();
// Why cuda_available() is false: "this binary was built without CUDA" or
// "no CUDA device: <cudaGetErrorString>"; "" when it is true.
std::string cuda_unavailable_reason();
// Throws InputError("<what>: device cuda: <reason>") when `d` cannot be used here.
void require_device(Device d, const std::string& what);

// 64-byte aligned host memory (cpu) or cudaMalloc (cuda); bytes == 0 still gives a valid pointer
// on cpu and nullptr on cuda. Uninitialised.
void* device_alloc(Device d, size_t bytes);
void device_free(Device d, void* p);
void device_zero(Device d, void* p, size_t bytes);
// Copies bytes between any two devices (regions must not overlap unless both are on cpu). A copy
// that touches the host returns when it is complete; device-to-device is queued on the current
// stream, ordered before every later op.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);

// An owning array of n T on one device (the parameter store's flat buffers, optimizer state, decode
// caches). Moves, never copies implicitly.
template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(size_t n, Device d) : n_(n), device_(d), p_(static_cast<T*>(device_alloc(d, n * sizeof(T)))) {}
  static DeviceArray zeros(size_t n, Device d) {
    DeviceArray a(n, d);
    a.zero();
    return a;
  }
  static DeviceArray from_host(const T* src, size_t n, Device d) {
    DeviceArray a(n, d);
    copy_bytes(a.p_, d, src, Device::cpu, n * sizeof(T));
    return a;
  }
  ~DeviceArray() { device_free(device_, p_); }
  DeviceArray(DeviceArray&& o) noexcept { swap(o); }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    DeviceArray t(std::move(o));
    swap(t);
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* data() { return p_; }
  const T* data() const { return p_; }
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  Device device() const { return device_; }
  void zero() { device_zero(device_, p_, n_ * sizeof(T)); }
  std::vector<T> to_host() const {
    std::vector<T> h(n_);
    copy_bytes(h.data(), Device::cpu, p_, device_, n_ * sizeof(T));
    return h;
  }
  // The same values on device d (a copy; *this is unchanged).
  DeviceArray to(Device d) const {
    DeviceArray a(n_, d);
    copy_bytes(a.p_, d, p_, device_, n_ * sizeof(T));
    return a;
  }

 private:
  void swap(DeviceArray& o) noexcept {
    std::swap(n_, o.n_);
    std::swap(device_, o.device_);
    std::swap(p_, o.p_);
  }
  size_t n_ = 0;
  Device device_ = Device::cpu;
  T* p_ = nullptr;
};

}  // namespace strata
