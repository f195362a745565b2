#pragma once
// Byte-level text data: the file's bytes are the tokens (vocab 256). The last val_fraction of the
// file is held out for validation. Training windows start at offsets drawn from a Philox stream, so
// the data position is part of the resumable state (its counter).
#include <cstdint>
#include <string>
#include <vector>

#include "core/rng.h"
#include "train/dataset.h"

namespace strata {

class TextData : public Dataset {
 public:
  TextData(const std::string& path, float val_fraction);
  // Throws InputError (naming data.path, the split, its size and train.seq) unless both splits hold
  // at least one window of T + 1 bytes: checked before training, so a short validation split does not
  // surface only at the first evaluation, after the work.
  void require_windows(int64_t T) const override;
  // ids, targets[B, T] (targets = ids shifted by one) from the train split, random windows.
  void train_batch(int32_t* ids, int32_t* targets, int64_t B, int64_t T, Rng& rng) const;
  // Rows [row0, row0 + rows) of that same batch, into ids, targets[rows, T]: the stream advances by
  // the whole batch, so every data-parallel rank draws the same global batch and keeps its slice.
  void train_batch_rows(int32_t* ids, int32_t* targets, int64_t B, int64_t T, Rng& rng, int64_t row0,
                        int64_t rows) const override;
  // The i-th fixed validation batch (deterministic windows spread over the val split).
  void val_batch(int32_t* ids, int32_t* targets, int64_t B, int64_t T, int64_t i, int64_t of) const override;
  std::string describe() const override;
  int64_t train_size() const { return split_; }
  int64_t val_size() const { return int64_t(bytes_.size()) - split_; }

 private:
  std::string path_;
  float val_fraction_ = 0;
  std::vector<uint8_t> bytes_;
  int64_t split_ = 0;
};

}  // namespace strata
