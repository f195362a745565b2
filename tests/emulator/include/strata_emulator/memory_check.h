#pragma once
// The emulated device's allocation registry, for the emulator's own libraries (cub, cuBLASLt, the
// execution model): device memory is host memory, so only the registry can say whether a pointer is
// device memory and whether a range lies inside one live allocation.
#include <cstddef>

namespace strata_emu {

// Whether [p, p + bytes) lies inside one live cudaMalloc / cudaMallocAsync / graph allocation
// (bytes == 0 asks about p alone).
bool device_range_live(const void* p, size_t bytes);

// Faults (strata_emu::fault) unless device_range_live(p, bytes); `what` names the access.
void require_device_range(const char* what, const void* p, size_t bytes);

}  // namespace strata_emu
