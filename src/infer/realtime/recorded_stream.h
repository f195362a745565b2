#pragma once
// A recorded observation stream: samples with timestamps, replayed on the executor's clock.
// Immutable after construction, so the planner and controller threads read it without locks.
#include <cstdint>
#include <vector>

#include "infer/realtime/interfaces.h"

namespace strata::rt {

class RecordedStream final : public ObservationSource {
 public:
  // values: [n, dim] row-major; stamps_ns: [n], nondecreasing, ns from the start of the recording.
  RecordedStream(std::vector<float> values, std::vector<int64_t> stamps_ns, int dim);
  int dim() const override { return dim_; }
  int64_t size() const { return int64_t(stamps_.size()); }
  // The newest sample at or before t_ns (the first sample before the recording starts, the last
  // one after it ends).
  int64_t read(int64_t t_ns, float* out) const override;

 private:
  std::vector<float> values_;
  std::vector<int64_t> stamps_;
  int dim_;
};

}  // namespace strata::rt
