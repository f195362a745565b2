#include "core/device.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"
#ifdef STRATA_WITH_CUDA
#include "core/device_cuda.h"
#endif

namespace strata {

bool cuda_available() {
#ifdef STRATA_WITH_CUDA
  return cuda::device_available();
#else
  return false;
#endif
}

std::string cuda_unavailable_reason() {
#ifdef STRATA_WITH_CUDA
  return cuda::unavailable_reason();
#else
  return "this binary was built without CUDA";
#endif
}

void require_device(Device d, const std::string& what) {
  if (d == Device::cuda && !cuda_available())
    throw InputError(fmt::format("{}: device cuda: {}", what, cuda_unavailable_reason()));
}

void* device_alloc(Device d, size_t bytes) {
  if (d == Device::cuda) {
    require_device(d, "device_alloc");
#ifdef STRATA_WITH_CUDA
    return cuda::alloc(bytes);
#endif
  }
  const size_t rounded = bytes ? (bytes + 63) / 64 * 64 : 64;
  void* p = std::aligned_alloc(64, rounded);
  STRATA_CHECK(p, "out of host memory allocating {} bytes", bytes);
  return p;
}

void device_free(Device d, void* p) {
  if (!p) return;
#ifdef STRATA_WITH_CUDA
  if (d == Device::cuda) return cuda::free(p);
#endif
  if (d == Device::cpu) std::free(p);
}

void device_zero(Device d, void* p, size_t bytes) {
  if (!bytes) return;
  if (d == Device::cuda) {
    require_device(d, "device_zero");
#ifdef STRATA_WITH_CUDA
    return cuda::memset_zero(p, bytes);
#endif
  }
  std::memset(p, 0, bytes);
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (!bytes) return;
  if (dst_device == Device::cpu && src_device == Device::cpu) {
    std::memmove(dst, src, bytes);
    return;
  }
  require_device(Device::cuda, "copy_bytes");
#ifdef STRATA_WITH_CUDA
  if (dst_device == Device::cuda && src_device == Device::cuda)
    cuda::copy_on_device(dst, src, bytes);
  else if (dst_device == Device::cuda)
    cuda::copy_to_device(dst, src, bytes);
  else
    cuda::copy_to_host(dst, src, bytes);
#endif
}

}  // namespace strata
