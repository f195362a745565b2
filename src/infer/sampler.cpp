#include "infer/sampler.h"

#include <algorithm>
#include <cmath>

namespace strata {

int32_t Sampler::sample(const float* logits, int64_t V, Rng& rng) {
  if (cfg_.temperature <= 0.0f) return int32_t(std::max_element(logits, logits + V) - logits);
  scratch_.resize(size_t(V));
  for (int64_t i = 0; i < V; ++i) scratch_[size_t(i)] = {logits[i] / cfg_.temperature, int32_t(i)};
  // Sorting by descending logit makes top-k and top-p prefixes; ties break by id for determinism.
  std::sort(scratch_.begin(), scratch_.end(),
            [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  size_t keep = scratch_.size();
  if (cfg_.top_k > 0) keep = std::min(keep, size_t(cfg_.top_k));
  float mx = scratch_[0].first;
  double total = 0;
  std::vector<double> p(keep);
  for (size_t i = 0; i < keep; ++i) total += p[i] = std::exp(double(scratch_[i].first - mx));
  if (cfg_.top_p < 1.0f) {
    double acc = 0;
    size_t n = 0;
    while (n < keep) {
      acc += p[n++] / total;
      if (acc >= cfg_.top_p) break;
    }
    keep = n;
    total = 0;
    for (size_t i = 0; i < keep; ++i) total += p[i];
  }
  double u = double(rng.uniform()) * total, acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += p[i];
    if (u < acc) return scratch_[i].second;
  }
  return scratch_[keep - 1].second;
}

}  // namespace strata
