#include "infer/realtime/recorded_stream.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace strata::rt {

RecordedStream::RecordedStream(std::vector<float> values, std::vector<int64_t> stamps_ns, int dim)
    : values_(std::move(values)), stamps_(std::move(stamps_ns)), dim_(dim) {
  STRATA_CHECK(dim > 0, "recorded stream: dim must be >= 1, got {}", dim);
  STRATA_CHECK(!stamps_.empty(), "recorded stream: no samples");
  STRATA_CHECK(values_.size() == stamps_.size() * size_t(dim), "recorded stream: {} values for {} samples of dim {}",
               values_.size(), stamps_.size(), dim);
  STRATA_CHECK(std::is_sorted(stamps_.begin(), stamps_.end()), "recorded stream: timestamps go backwards");
}

int64_t RecordedStream::read(int64_t t_ns, float* out) const {
  auto it = std::upper_bound(stamps_.begin(), stamps_.end(), t_ns);
  const size_t i = it == stamps_.begin() ? 0 : size_t(it - stamps_.begin()) - 1;
  std::memcpy(out, values_.data() + i * size_t(dim_), sizeof(float) * size_t(dim_));
  return stamps_[i];
}

}  // namespace strata::rt
