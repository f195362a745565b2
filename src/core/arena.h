#pragma once
// Bump allocator for activations: a training step allocates what backward will need, and the
// whole lot is released at once by reset(). Blocks are never moved, so pointers stay valid until
// the next reset; after the first step the arena has grown to its working size and no longer calls
// the system allocator. The blocks live on the arena's device (host memory, or cudaMalloc'd
// memory for a cuda arena, whose pointers only kernels may dereference).
#include <cstddef>
#include <memory>
#include <vector>

#include "core/dtype.h"

namespace strata {

class Arena {
 public:
  explicit Arena(size_t block_floats = size_t(1) << 22, Device device = Device::cpu)
      : block_floats_(block_floats), device_(device) {}
  explicit Arena(Device device) : Arena(size_t(1) << 22, device) {}
  float* alloc(size_t n);          // uninitialised, 64-byte aligned
  float* alloc_zeroed(size_t n);
  int* alloc_int(size_t n) { return reinterpret_cast<int*>(alloc(n)); }
  void reset();
  size_t capacity_floats() const;
  Device device() const { return device_; }

 private:
  struct Freer {
    Device device;
    void operator()(float* p) const;
  };
  struct Block {
    std::unique_ptr<float[], Freer> mem{nullptr, Freer{Device::cpu}};
    size_t size = 0, used = 0;
  };
  std::vector<Block> blocks_;
  size_t current_ = 0;
  size_t block_floats_;
  Device device_;
};

}  // namespace strata
