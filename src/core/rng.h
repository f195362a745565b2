#pragma once
// Philox4x32-10 (Salmon et al. 2011): counter-based, so any element of the stream can be computed
// independently — the same numbers on CPU and GPU, and a resumable state of just (seed, counter).
#include <array>
#include <cstdint>

namespace strata {

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

// (seed, counter) is the whole state: `counter` counts 32-bit words drawn, so saving and restoring
// it resumes the stream exactly, mid-block included.
struct Rng {
  uint64_t seed = 0;
  uint64_t counter = 0;

  explicit Rng(uint64_t s = 0, uint64_t c = 0) : seed(s), counter(c) {}
  uint32_t next_u32();
  float uniform();  // [0, 1)
  float normal();   // standard normal (Box–Muller)
  uint64_t below(uint64_t n);  // uniform integer in [0, n)

 private:
  std::array<uint32_t, 4> block_{};
  uint64_t block_index_ = ~uint64_t(0);  // which 4-word block block_ holds
};

}  // namespace strata
