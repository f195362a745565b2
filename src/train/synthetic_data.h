#pragma once
// A synthetic task as a Dataset (train/dataset.h). Each training row is generated from its own Philox
// stream whose seed is drawn from the run's data stream (two words per row, for every row of the
// global batch): a data-parallel rank generates only its rows yet advances the stream exactly as a
// single process does, and a checkpoint's (seed, counter) resumes it. Validation row k (of any
// length) comes from a fixed seed that does not depend on train.seed, so every run of a sweep is
// measured on the same sequences.
#include "train/dataset.h"
#include "train/synthetic_task.h"

namespace strata {

class SyntheticData : public Dataset {
 public:
  explicit SyntheticData(SyntheticTask task);
  void require_windows(int64_t T) const override;
  void train_batch_rows(int32_t* ids, int32_t* targets, int64_t B, int64_t T, Rng& rng, int64_t row0,
                        int64_t rows) const override;
  void val_batch(int32_t* ids, int32_t* targets, int64_t B, int64_t T, int64_t i, int64_t of) const override;
  // Validation rows [k0, k0 + rows) at length T: val_batch(i) is val_rows(i * B, B).
  void val_rows(int32_t* ids, int32_t* targets, int64_t k0, int64_t rows, int64_t T) const;
  std::string describe() const override;
  bool has_accuracy() const override { return true; }
  bool has_sequence_accuracy() const override { return task_.sequence_metric; }
  const SyntheticTask& task() const { return task_; }

 private:
  SyntheticTask task_;
};

}  // namespace strata
