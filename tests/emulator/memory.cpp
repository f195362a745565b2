// Emulated device memory: host memory in a registry of live allocations, so that the runtime can
// refuse what CUDA refuses (freeing an unknown pointer, a copy outside any allocation) and the
// emulator can fault on a queued copy into memory freed meanwhile; the copies and memsets with
// CUDA's stream semantics (pageable host memory: staged at the call, device-to-host synchronous).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "runtime_internal.h"

namespace strata_emu::rt {
namespace {

constexpr size_t kAlign = 256;  // cudaMalloc's alignment
constexpr size_t kGuard = 256;  // bytes past each allocation's rounded size, checked at release
constexpr unsigned char kUninit = 0xff;  // NaN as fp32 and bf16, -1 as an integer
constexpr unsigned char kGuardByte = 0xa5;

struct Alloc {
  size_t bytes;   // as requested
  size_t padded;  // rounded to kAlign, then the guard zone
};

struct Registry {
  std::mutex mu;
  std::map<uintptr_t, Alloc> live;
  size_t in_use = 0;
};
Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: destructors of statics may still free
  return *r;
}

// The allocation holding [p, p + bytes), or nullptr. Call under the registry's mutex.
const std::pair<const uintptr_t, Alloc>* find_locked(const void* p, size_t bytes) {
  auto& live = registry().live;
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = live.upper_bound(a);
  if (it == live.begin()) return nullptr;
  --it;
  const size_t n = bytes ? bytes : 1;
  if (a >= it->first && a - it->first <= it->second.bytes && n <= it->second.bytes - (a - it->first)) return &*it;
  return nullptr;
}

size_t env_size(const char* name, size_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  return size_t(std::strtoull(v, nullptr, 10));
}

}  // namespace

size_t memory_limit() {
  // What the emulated device may hand out in all (the host's memory is shared with the tests).
  static const size_t limit = env_size("STRATA_EMU_MEMORY_MB", 8192) << 20;
  return limit;
}

void* device_alloc(size_t bytes) {
  const size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
  const size_t padded = rounded + kGuard;
  {
    std::lock_guard<std::mutex> lock(registry().mu);
    if (registry().in_use + rounded > memory_limit()) return nullptr;
  }
  void* p = std::aligned_alloc(kAlign, padded);
  if (!p) return nullptr;
  std::memset(p, kUninit, bytes);
  std::memset(static_cast<char*>(p) + bytes, kGuardByte, padded - bytes);
  std::lock_guard<std::mutex> lock(registry().mu);
  registry().live.emplace(reinterpret_cast<uintptr_t>(p), Alloc{bytes, padded});
  registry().in_use += rounded;
  return p;
}

bool device_release(void* p) {
  Alloc a{};
  {
    std::lock_guard<std::mutex> lock(registry().mu);
    auto it = registry().live.find(reinterpret_cast<uintptr_t>(p));
    if (it == registry().live.end()) return false;
    a = it->second;
    registry().live.erase(it);
    registry().in_use -= a.padded - kGuard;
  }
  // A kernel that wrote past the end of its buffer (into the rounding slack or beyond) shows here.
  const auto* c = static_cast<const unsigned char*>(p);
  for (size_t i = a.bytes; i < a.padded; ++i)
    if (c[i] != kGuardByte)
      fault("device memory written out of bounds: allocation %p of %zu bytes has byte %zu past its end changed", p,
            a.bytes, i - a.bytes);
  std::free(p);
  return true;
}

bool is_allocation_base(const void* p) {
  std::lock_guard<std::mutex> lock(registry().mu);
  return registry().live.count(reinterpret_cast<uintptr_t>(p)) != 0;
}

void fill_uninitialised(void* p, size_t bytes) { std::memset(p, kUninit, bytes); }

size_t bytes_in_use() {
  std::lock_guard<std::mutex> lock(registry().mu);
  return registry().in_use;
}

}  // namespace strata_emu::rt

namespace strata_emu {

bool device_range_live(const void* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(rt::registry().mu);
  return rt::find_locked(p, bytes) != nullptr;
}

void require_device_range(const char* what, const void* p, size_t bytes) {
  if (!device_range_live(p, bytes))
    fault("%s: device range [%p, +%zu bytes) is not inside one live allocation (freed, out of bounds, or host memory)",
          what, p, bytes);
}

}  // namespace strata_emu

using namespace strata_emu;
using namespace strata_emu::rt;

namespace {

// The kind a copy really is (cudaMemcpyDefault resolved through the registry), or an error when a
// side the kind calls device memory is not inside a live allocation, or a side it calls host memory
// is device memory (CUDA would read device memory from the host: a crash on a GPU).
cudaError_t resolve_kind(void* dst, const void* src, size_t n, cudaMemcpyKind& kind) {
  const bool dst_dev = device_range_live(dst, n), src_dev = device_range_live(src, n);
  if (kind == cudaMemcpyDefault) {
    kind = src_dev ? (dst_dev ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost)
                   : (dst_dev ? cudaMemcpyHostToDevice : cudaMemcpyHostToHost);
    return cudaSuccess;
  }
  const bool want_src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  const bool want_dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) return cudaErrorInvalidValue;
  if (want_src_dev != src_dev || want_dst_dev != dst_dev) return cudaErrorInvalidValue;
  return cudaSuccess;
}

// The queued copy: re-checks the device sides when it runs (the memory may have been freed since).
std::function<void()> copy_work(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  return [=] {
    if (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice) require_device_range("memcpy dst", dst, n);
    if (kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice) require_device_range("memcpy src", src, n);
    std::memmove(dst, src, n);
  };
}

cudaError_t memcpy_on(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t stream, bool sync) {
  if (n == 0) return cudaSuccess;
  if (!dst || !src) return cudaErrorInvalidValue;
  if (cudaError_t e = resolve_kind(dst, src, n, kind); e != cudaSuccess) return e;
  if (sync) {
    // Synchronous copies are legacy-stream operations and "potentially unsafe" during capture.
    if (cudaError_t e = check_legacy_use(); e != cudaSuccess) return e;
    if (cudaError_t e = check_unsafe_call(); e != cudaSuccess) return e;
  }
  auto s = stream_of(stream);
  if (!s) return cudaErrorInvalidResourceHandle;
  {
    std::lock_guard<std::mutex> lock(capture_mutex());
    if (capture_status_locked(*s) != cudaStreamCaptureStatusNone)
      // A memcpy node: it reads and writes its host side when the graph runs.
      return record_node_locked(*s, NodeKind::memcpy, "cudaMemcpyAsync", copy_work(dst, src, n, kind));
  }
  std::function<void()> work;
  if (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyHostToHost) {
    // Pageable host memory is staged at the call: the caller may reuse its buffer at once.
    auto staged = std::make_shared<std::vector<unsigned char>>(static_cast<const unsigned char*>(src),
                                                               static_cast<const unsigned char*>(src) + n);
    work = [dst, n, kind, staged] {
      if (kind == cudaMemcpyHostToDevice) require_device_range("memcpy dst", dst, n);
      std::memcpy(dst, staged->data(), n);
    };
  } else {
    work = copy_work(dst, src, n, kind);
  }
  Dep d;
  if (cudaError_t e = stream_op(stream, NodeKind::memcpy, "cudaMemcpy", std::move(work), &d); e != cudaSuccess)
    return e;
  // Synchronous copies, and device-to-host copies into pageable memory, return when done.
  if (sync || kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyHostToHost) run_until({d});
  return cudaSuccess;
}

cudaError_t memset_on(void* p, int value, size_t n, cudaStream_t stream, bool sync) {
  if (n == 0) return cudaSuccess;
  if (!device_range_live(p, n)) return cudaErrorInvalidValue;
  if (sync) {
    if (cudaError_t e = check_legacy_use(); e != cudaSuccess) return e;
    if (cudaError_t e = check_unsafe_call(); e != cudaSuccess) return e;
  }
  Dep d;
  const cudaError_t e = stream_op(
      stream, NodeKind::memset, "cudaMemset",
      [p, value, n] {
        require_device_range("memset", p, n);
        std::memset(p, value & 0xff, n);
      },
      &d);
  if (e == cudaSuccess && sync) run_until({d});
  return e;
}

}  // namespace

cudaError_t cudaMalloc(void** devPtr, size_t size) {
  if (!devPtr) return ret(cudaErrorInvalidValue);
  if (cudaError_t e = check_unsafe_call(); e != cudaSuccess) return ret(e);
  *devPtr = nullptr;
  if (size == 0) return cudaSuccess;
  *devPtr = device_alloc(size);
  return *devPtr ? cudaSuccess : ret(cudaErrorMemoryAllocation);
}

cudaError_t cudaFree(void* devPtr) {
  if (!devPtr) return cudaSuccess;
  if (cudaError_t e = check_unsafe_call(); e != cudaSuccess) return ret(e);
  if (!is_allocation_base(devPtr)) return ret(cudaErrorInvalidValue);
  // cudaFree waits for the device: queued work may still use the memory.
  drain_all();
  return device_release(devPtr) ? cudaSuccess : ret(cudaErrorInvalidValue);
}

cudaError_t cudaMallocAsync(void** devPtr, size_t size, cudaStream_t stream) {
  if (!devPtr) return ret(cudaErrorInvalidValue);
  *devPtr = nullptr;
  auto s = stream_of(stream);
  if (!s) return ret(cudaErrorInvalidResourceHandle);
  if (size == 0) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lock(capture_mutex());
    if (capture_status_locked(*s) != cudaStreamCaptureStatusNone) return ret(capture_malloc_locked(*s, devPtr, size));
  }
  if (s->legacy)
    if (cudaError_t e = check_legacy_use(); e != cudaSuccess) return ret(e);
  // The memory is reserved now; being fresh, no queued work can be using it.
  *devPtr = device_alloc(size);
  return *devPtr ? cudaSuccess : ret(cudaErrorMemoryAllocation);
}

cudaError_t cudaFreeAsync(void* devPtr, cudaStream_t stream) {
  if (!devPtr) return cudaSuccess;
  auto s = stream_of(stream);
  if (!s) return ret(cudaErrorInvalidResourceHandle);
  {
    std::lock_guard<std::mutex> lock(capture_mutex());
    if (capture_status_locked(*s) != cudaStreamCaptureStatusNone) return ret(capture_free_locked(*s, devPtr));
  }
  if (!is_allocation_base(devPtr)) return ret(cudaErrorInvalidValue);
  // Released in stream order: work queued before it on the stream may still use the memory.
  return ret(stream_op(stream, NodeKind::mem_free, "cudaFreeAsync", [devPtr] {
    if (!device_release(devPtr)) fault("cudaFreeAsync: %p was freed twice", devPtr);
  }));
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  return ret(memcpy_on(dst, src, count, kind, nullptr, true));
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind, cudaStream_t stream) {
  return ret(memcpy_on(dst, src, count, kind, stream, false));
}

cudaError_t cudaMemset(void* devPtr, int value, size_t count) {
  return ret(memset_on(devPtr, value, count, nullptr, true));
}

cudaError_t cudaMemsetAsync(void* devPtr, int value, size_t count, cudaStream_t stream) {
  return ret(memset_on(devPtr, value, count, stream, false));
}

cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  if (!free || !total) return ret(cudaErrorInvalidValue);
  *total = memory_limit();
  *free = memory_limit() - bytes_in_use();
  return cudaSuccess;
}
