#pragma once
// The CUDA runtime as core uses it: device memory, availability and the current stream, as a plain
// C++ header (no CUDA headers), so that host code (core/device.cpp, tests, tools) can move data
// without them. Implemented in core/device_cuda.cpp with the CUDA runtime API; only a build with
// CUDA (STRATA_WITH_CUDA) has it. The kernels (kernels/cuda) queue their work on current_stream()
// and allocate through these too; stream-ordered scratch stays with them (kernels/cuda/runtime.h).
// Every call but free() throws strata::Error (file:line and cudaGetErrorString) on failure.
#include <cstddef>
#include <string>

// The CUDA runtime's stream type, declared here so that no CUDA header is needed: cudaStream_t is
// `CUstream_st*` (nullptr: the legacy default stream).
struct CUstream_st;

namespace strata::cuda {

// True when the CUDA runtime finds at least one device. Never throws; the answer is cached.
bool device_available();
// Why device_available() is false ("no CUDA device: <cudaGetErrorString>"), or "" when it is true.
std::string unavailable_reason();

// The current device as benchmarks report it: its name and peak DRAM bandwidth (2 transfers a
// clock x memory clock x bus width: what decode's bandwidth bound divides by; 0 when the driver does
// not report the clock).
struct DeviceInfo {
  std::string name;
  double peak_gbs = 0;
};
DeviceInfo device_info();

// The stream every op and copy is queued on: per host thread, the legacy default stream unless set.
CUstream_st* current_stream();
void set_current_stream(CUstream_st* s);

void* alloc(size_t bytes);            // cudaMalloc; 256-byte aligned; bytes == 0 gives nullptr
void free(void* p);                   // nullptr is a no-op; never throws (used by destructors)
void memset_zero(void* p, size_t bytes);  // queued on the current stream
// Copies are ordered on the current stream. Those that touch the host return once the data has
// arrived (the host buffer may be reused immediately); device-to-device is only queued.
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);
void copy_on_device(void* dst, const void* src, size_t bytes);
void synchronize();  // waits for the current stream

}  // namespace strata::cuda
