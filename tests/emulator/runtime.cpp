// The emulated device and its errors: one device modelled on an sm_90 part (H100 SXM figures), its
// properties and attributes, per-kernel shared-memory opt-in, and CUDA's last-error rules with
// CUDA's error texts.
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "runtime_internal.h"

namespace strata_emu::rt {
namespace {
thread_local cudaError_t t_last_error = cudaSuccess;

std::mutex g_func_mu;
std::unordered_map<const void*, size_t>& func_smem() {
  static auto* m = new std::unordered_map<const void*, size_t>;
  return *m;
}

constexpr int kSms = 132;
constexpr int kMemoryClockKhz = 2619000;  // HBM3, 5.2 Gbit/s per pin
constexpr int kBusWidthBits = 5120;
constexpr size_t kTotalGlobalMem = size_t(80) << 30;
}  // namespace

cudaError_t ret(cudaError_t err) {
  if (err != cudaSuccess && err != cudaErrorNotReady) t_last_error = err;
  return err;
}

}  // namespace strata_emu::rt

namespace strata_emu {

void set_last_error(cudaError_t err) { rt::ret(err); }

size_t max_dynamic_smem(const void* kernel) {
  std::lock_guard<std::mutex> lock(rt::g_func_mu);
  auto it = rt::func_smem().find(kernel);
  return it == rt::func_smem().end() ? kSmemStaticMax : it->second;
}

}  // namespace strata_emu

using namespace strata_emu;
using namespace strata_emu::rt;

cudaError_t cudaGetLastError() {
  const cudaError_t e = t_last_error;
  t_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() { return t_last_error; }

#define STRATA_EMU_ERRORS(X)                                                                                     \
  X(cudaSuccess, "no error")                                                                                     \
  X(cudaErrorInvalidValue, "invalid argument")                                                                   \
  X(cudaErrorMemoryAllocation, "out of memory")                                                                  \
  X(cudaErrorInitializationError, "initialization error")                                                        \
  X(cudaErrorCudartUnloading, "driver shutting down")                                                            \
  X(cudaErrorInvalidConfiguration, "invalid configuration argument")                                             \
  X(cudaErrorInvalidDevicePointer, "invalid device pointer")                                                     \
  X(cudaErrorInvalidDeviceFunction, "invalid device function")                                                   \
  X(cudaErrorNoDevice, "no CUDA-capable device is detected")                                                     \
  X(cudaErrorInvalidDevice, "invalid device ordinal")                                                            \
  X(cudaErrorInvalidResourceHandle, "invalid resource handle")                                                   \
  X(cudaErrorIllegalState, "the operation cannot be performed in the present state")                             \
  X(cudaErrorNotReady, "device not ready")                                                                       \
  X(cudaErrorIllegalAddress, "an illegal memory access was encountered")                                         \
  X(cudaErrorLaunchOutOfResources, "too many resources requested for launch")                                    \
  X(cudaErrorMisalignedAddress, "misaligned address")                                                            \
  X(cudaErrorLaunchFailure, "unspecified launch failure")                                                        \
  X(cudaErrorNotPermitted, "operation not permitted")                                                            \
  X(cudaErrorNotSupported, "operation not supported")                                                            \
  X(cudaErrorStreamCaptureUnsupported, "operation not permitted when stream is capturing")                       \
  X(cudaErrorStreamCaptureInvalidated, "operation failed due to a previous error during capture")                \
  X(cudaErrorStreamCaptureMerge, "operation would result in a merge of separate capture sequences")              \
  X(cudaErrorStreamCaptureUnmatched, "capture was not ended in the same stream as it began")                     \
  X(cudaErrorStreamCaptureUnjoined, "capturing stream has unjoined work")                                        \
  X(cudaErrorStreamCaptureIsolation, "dependency created on uncaptured work in another stream")                  \
  X(cudaErrorStreamCaptureImplicit, "operation would make the legacy stream depend on a capturing blocking stream") \
  X(cudaErrorCapturedEvent, "operation not permitted on an event last recorded in a capturing stream")           \
  X(cudaErrorStreamCaptureWrongThread, "attempt to terminate a thread-local capture sequence from another thread") \
  X(cudaErrorGraphExecUpdateFailure,                                                                             \
    "the graph update was not performed because it included changes which violated constraints specific to "     \
    "instantiated graph update")                                                                                 \
  X(cudaErrorUnknown, "unknown error")

const char* cudaGetErrorString(cudaError_t error) {
#define X(name, text) \
  if (error == name) return text;
  STRATA_EMU_ERRORS(X)
#undef X
  return "unrecognized error code";
}

const char* cudaGetErrorName(cudaError_t error) {
#define X(name, text) \
  if (error == name) return #name;
  STRATA_EMU_ERRORS(X)
#undef X
  return "unrecognized error code";
}

cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return ret(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  if (!device) return ret(cudaErrorInvalidValue);
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : ret(cudaErrorInvalidDevice); }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (!prop) return ret(cudaErrorInvalidValue);
  if (device != 0) return ret(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof(*prop));
  std::strncpy(prop->name, "strata CPU emulator (sm_90 model)", sizeof(prop->name) - 1);
  prop->totalGlobalMem = kTotalGlobalMem;
  prop->sharedMemPerBlock = kSmemStaticMax;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->memPitch = 2147483647;
  prop->maxThreadsPerBlock = int(kMaxThreadsPerBlock);
  prop->maxThreadsDim[0] = 1024, prop->maxThreadsDim[1] = 1024, prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647, prop->maxGridSize[1] = 65535, prop->maxGridSize[2] = 65535;
  prop->clockRate = 1980000;
  prop->totalConstMem = 65536;
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = kSms;
  prop->concurrentKernels = 1;
  prop->unifiedAddressing = 1;
  prop->memoryClockRate = kMemoryClockKhz;
  prop->memoryBusWidth = kBusWidthBits;
  prop->l2CacheSize = 50 << 20;
  prop->maxThreadsPerMultiProcessor = 2048;
  prop->sharedMemPerMultiprocessor = 228 * 1024;
  prop->regsPerMultiprocessor = 65536;
  prop->sharedMemPerBlockOptin = kSmemPerBlockOptin;
  prop->memoryPoolsSupported = 1;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (!value) return ret(cudaErrorInvalidValue);
  if (device != 0) return ret(cudaErrorInvalidDevice);
  cudaDeviceProp p;
  cudaGetDeviceProperties(&p, 0);
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxBlockDimX: *value = p.maxThreadsDim[0]; break;
    case cudaDevAttrMaxBlockDimY: *value = p.maxThreadsDim[1]; break;
    case cudaDevAttrMaxBlockDimZ: *value = p.maxThreadsDim[2]; break;
    case cudaDevAttrMaxGridDimX: *value = p.maxGridSize[0]; break;
    case cudaDevAttrMaxGridDimY: *value = p.maxGridSize[1]; break;
    case cudaDevAttrMaxGridDimZ: *value = p.maxGridSize[2]; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = int(p.sharedMemPerBlock); break;
    case cudaDevAttrTotalConstantMemory: *value = int(p.totalConstMem); break;
    case cudaDevAttrWarpSize: *value = p.warpSize; break;
    case cudaDevAttrMaxRegistersPerBlock: *value = p.regsPerBlock; break;
    case cudaDevAttrClockRate: *value = p.clockRate; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrIntegrated: *value = 0; break;
    case cudaDevAttrConcurrentKernels: *value = 1; break;
    case cudaDevAttrMemoryClockRate: *value = p.memoryClockRate; break;
    case cudaDevAttrGlobalMemoryBusWidth: *value = p.memoryBusWidth; break;
    case cudaDevAttrL2CacheSize: *value = p.l2CacheSize; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = p.maxThreadsPerMultiProcessor; break;
    case cudaDevAttrUnifiedAddressing: *value = 1; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = int(p.sharedMemPerMultiprocessor); break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = int(p.sharedMemPerBlockOptin); break;
    case cudaDevAttrMemoryPoolsSupported: *value = 1; break;
    default: return ret(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (!func) return ret(cudaErrorInvalidDeviceFunction);
  switch (attr) {
    case cudaFuncAttributeMaxDynamicSharedMemorySize: {
      // CUDA refuses more than the opt-in limit (the kernel's static shared memory counts against it
      // too; the launch checks the sum).
      if (value < 0 || size_t(value) > kSmemPerBlockOptin) return ret(cudaErrorInvalidValue);
      std::lock_guard<std::mutex> lock(g_func_mu);
      func_smem()[func] = size_t(value);
      return cudaSuccess;
    }
    case cudaFuncAttributePreferredSharedMemoryCarveout:
      return value >= -1 && value <= 100 ? cudaSuccess : ret(cudaErrorInvalidValue);
  }
  return ret(cudaErrorInvalidValue);
}

cudaError_t cudaDeviceReset() {
  // Waits for the device and forgets per-kernel settings; allocations stay (the emulator has no
  // context to tear down, and strata frees what it allocated).
  if (cudaError_t e = cudaDeviceSynchronize(); e != cudaSuccess) return e;
  std::lock_guard<std::mutex> lock(g_func_mu);
  func_smem().clear();
  return cudaSuccess;
}
