#pragma once
// Philox4x32-10 (Salmon et al. 2011): counter-based, so any element of the stream can be computed
// independently — the same numbers on CPU and GPU, and a resumable state of just (seed, counter).
#include <array>
#include <cstdint>

namespace strata {

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

struct Rng {
  uint64_t seed = 0;
  uint64_t counter = 0;  // number of 4-word blocks consumed

  explicit Rng(uint64_t s = 0, uint64_t c = 0) : seed(s), counter(c) {}
  std::array<uint32_t, 4> next4();
  uint32_t next_u32();
  float uniform();  // [0, 1)
  float normal();   // standard normal (Box–Muller)
  uint64_t below(uint64_t n);  // uniform integer in [0, n)

 private:
  std::array<uint32_t, 4> buf_{};
  int used_ = 4;
};

}  // namespace strata
