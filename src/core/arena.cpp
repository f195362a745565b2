#include "core/arena.h"

#include <algorithm>

#include "core/device.h"

namespace strata {

void Arena::Freer::operator()(float* p) const { device_free(device, p); }

float* Arena::alloc(size_t n) {
  n = (n + 15) & ~size_t(15);  // keep 64-byte alignment for the next allocation
  while (current_ < blocks_.size() && blocks_[current_].used + n > blocks_[current_].size) ++current_;
  if (current_ == blocks_.size()) {
    Block b;
    b.size = std::max(n, block_floats_);
    b.mem = std::unique_ptr<float[], Freer>(static_cast<float*>(device_alloc(device_, b.size * sizeof(float))),
                                            Freer{device_});
    blocks_.push_back(std::move(b));
  }
  Block& b = blocks_[current_];
  float* p = b.mem.get() + b.used;
  b.used += n;
  return p;
}

float* Arena::alloc_zeroed(size_t n) {
  float* p = alloc(n);
  device_zero(device_, p, n * sizeof(float));
  return p;
}

void Arena::reset() {
  for (auto& b : blocks_) b.used = 0;
  current_ = 0;
}

size_t Arena::capacity_floats() const {
  size_t s = 0;
  for (auto& b : blocks_) s += b.size;
  return s;
}

}  // namespace strata
