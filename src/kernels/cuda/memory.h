#pragma once
// Device memory and availability for the CUDA backend, as a plain C++ header (no CUDA types), so
// that host code (core/device.cpp, tests) can move data without including the CUDA headers.
// Every call but free() throws strata::Error (file:line and cudaGetErrorString) on failure.
#include <cstddef>
#include <string>

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

void* alloc(size_t bytes);            // cudaMalloc; 256-byte aligned; bytes == 0 gives nullptr
void free(void* p);                   // nullptr is a no-op; never throws (used by destructors)
void memset_zero(void* p, size_t bytes);  // queued on the current stream
// Copies are ordered on the current stream and return once the data has arrived (the host buffer
// may be reused immediately).
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);
void copy_on_device(void* dst, const void* src, size_t bytes);
void synchronize();  // waits for the current stream

}  // namespace strata::cuda
