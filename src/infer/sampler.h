#pragma once
// Next-token sampling from logits: greedy (temperature 0), temperature, top-k, top-p (nucleus).
// All randomness comes from the caller's Rng, so a fixed seed gives a fixed continuation.
#include <cstdint>
#include <vector>

#include "core/rng.h"

namespace strata {

struct SamplerConfig {
  float temperature = 0.8f;  // 0 -> greedy
  int top_k = 0;             // 0 -> off
  float top_p = 1.0f;        // 1 -> off
};

class Sampler {
 public:
  explicit Sampler(SamplerConfig cfg) : cfg_(cfg) {}
  // logits[V] -> token id
  int32_t sample(const float* logits, int64_t V, Rng& rng);

 private:
  SamplerConfig cfg_;
  std::vector<std::pair<float, int32_t>> scratch_;
};

}  // namespace strata
