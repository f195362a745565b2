#pragma once
// Bump allocator for activations: a training step allocates what backward will need, and the
// whole lot is released at once by reset(). Blocks are never moved, so pointers stay valid until
// the next reset; after the first step the arena has grown to its working size and no longer calls
// the system allocator.
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <vector>

namespace strata {

class Arena {
 public:
  explicit Arena(size_t block_floats = size_t(1) << 22) : block_floats_(block_floats) {}
  float* alloc(size_t n);          // uninitialised, 64-byte aligned
  float* alloc_zeroed(size_t n);
  int* alloc_int(size_t n) { return reinterpret_cast<int*>(alloc(n)); }
  void reset();
  size_t capacity_floats() const;

 private:
  struct FreeDeleter {
    void operator()(float* p) const { std::free(p); }
  };
  struct Block {
    std::unique_ptr<float[], FreeDeleter> mem;
    size_t size = 0, used = 0;
  };
  std::vector<Block> blocks_;
  size_t current_ = 0;
  size_t block_floats_;
};

}  // namespace strata
