#pragma once
// The seam between the emulator's two halves: the execution model (launch.h / execution.cpp: blocks,
// threads as fibers, barriers, warps, shared memory) and the runtime (runtime.cpp: memory, streams,
// events, graphs, device properties, errors; cublaslt.cpp; cub). Both include this header; the
// CUDA-named headers in tests/emulator/include/ (cuda_runtime.h, cublasLt.h, cuda_bf16.h, mma.h,
// cub/...) are built on it. Everything a kernel or a host caller sees keeps CUDA's own names.
#include <cstddef>
#include <cstdint>
#include <functional>

// CUDA's error codes (the subset the emulator can return; values as in driver_types.h).
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorCudartUnloading = 4,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidDeviceFunction = 98,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorIllegalState = 401,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorMisalignedAddress = 716,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotPermitted = 800,
  cudaErrorNotSupported = 801,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureMerge = 902,
  cudaErrorStreamCaptureUnmatched = 903,
  cudaErrorStreamCaptureUnjoined = 904,
  cudaErrorStreamCaptureIsolation = 905,
  cudaErrorStreamCaptureImplicit = 906,
  cudaErrorCapturedEvent = 907,
  cudaErrorStreamCaptureWrongThread = 908,
  cudaErrorGraphExecUpdateFailure = 910,
  cudaErrorNoDevice = 100,
  cudaErrorUnknown = 999,
};

typedef struct CUstream_st* cudaStream_t;  // nullptr: the legacy default stream

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace strata_emu {

// ---- implemented by the runtime (runtime.cpp) ----
// Queues one unit of device work on `stream` with CUDA's ordering rules: it runs in stream order
// (now, or when a synchronising call needs it, as the runtime decides), or, while the stream is
// being captured, becomes a node of the graph being recorded. `what` names it in diagnostics.
void enqueue(cudaStream_t stream, const char* what, std::function<void()> work);
// The sticky "last error" cudaGetLastError / cudaPeekAtLastError report (per host thread).
void set_last_error(cudaError_t err);
// The dynamic shared memory a launch of `kernel` may use: 48 KiB unless raised by
// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, n).
size_t max_dynamic_smem(const void* kernel);
// The emulated device's limits (one device, modelled on an sm_90 part).
constexpr size_t kSmemPerBlockOptin = 227 * 1024;  // static + dynamic, after opting in
constexpr size_t kSmemStaticMax = 48 * 1024;
constexpr unsigned kMaxThreadsPerBlock = 1024;

// ---- implemented by the execution model (execution.cpp) ----
// A kernel fault the GPU would report as a sticky launch failure (deadlock at a barrier, a shuffle
// with a wrong mask, shared memory over capacity, a misaligned vector / WMMA access, ...): prints
// the kernel, block, thread and reason to stderr and aborts, so the failing test names it.
[[noreturn]] void fault(const char* fmt, ...);

}  // namespace strata_emu
