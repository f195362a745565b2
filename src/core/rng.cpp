#include "core/rng.h"

#include <cmath>

namespace strata {

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = uint64_t(M0) * c[0], p1 = uint64_t(M1) * c[2];
    c = {uint32_t(p1 >> 32) ^ c[1] ^ k[0], uint32_t(p1), uint32_t(p0 >> 32) ^ c[3] ^ k[1], uint32_t(p0)};
    k[0] += W0;
    k[1] += W1;
  }
  return c;
}

uint32_t Rng::next_u32() {
  uint64_t blk = counter >> 2;
  if (blk != block_index_) {
    block_ = philox4x32({uint32_t(blk), uint32_t(blk >> 32), 0, 0}, {uint32_t(seed), uint32_t(seed >> 32)});
    block_index_ = blk;
  }
  return block_[counter++ & 3];
}

float Rng::uniform() { return float(next_u32() >> 8) * (1.0f / 16777216.0f); }

float Rng::normal() {
  float u1 = (float(next_u32() >> 8) + 1.0f) * (1.0f / 16777217.0f);
  float u2 = uniform();
  return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853071795864f * u2);
}

uint64_t Rng::below(uint64_t n) {
  uint64_t x = (uint64_t(next_u32()) << 32) | next_u32();
  return x % n;
}

}  // namespace strata
