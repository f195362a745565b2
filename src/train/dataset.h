#pragma once
// The data a language-model run trains on, whatever data.kind is: the byte-level text file
// (train/data.h) or a synthetic task generated on the fly (train/synthetic_data.h). The trainer sees
// only this interface. The training stream's position is the Rng it is handed (seed + counter), so
// it is part of every checkpoint; validation batches are a fixed function of their index.
#include <cstdint>
#include <memory>
#include <string>

#include "core/rng.h"
#include "models/config.h"

namespace strata {

class Dataset {
 public:
  virtual ~Dataset() = default;
  // Throws InputError naming the keys unless sequences of T tokens can be drawn for training and
  // validation: checked before any work.
  virtual void require_windows(int64_t T) const = 0;
  // Rows [row0, row0 + rows) of the global training batch ids, targets[B, T], into ids, targets[rows, T]:
  // the stream advances by the whole batch, so every data-parallel rank draws the same global batch
  // and keeps its slice.
  virtual void train_batch_rows(int32_t* ids, int32_t* targets, int64_t B, int64_t T, Rng& rng, int64_t row0,
                                int64_t rows) const = 0;
  void train_batch(int32_t* ids, int32_t* targets, int64_t B, int64_t T, Rng& rng) const {
    train_batch_rows(ids, targets, B, T, rng, 0, B);
  }
  // The i-th of `of` fixed validation batches ids, targets[B, T].
  virtual void val_batch(int32_t* ids, int32_t* targets, int64_t B, int64_t T, int64_t i, int64_t of) const = 0;
  // What the run trains on, for its first log line ("'data.txt' (900 train / 100 val bytes)").
  virtual std::string describe() const = 0;
  // Synthetic tasks: the loss covers only the tested positions, and the run reports the accuracy
  // there (train/accuracy.h), at train.seq and at data.eval_seqs.
  virtual bool has_accuracy() const { return false; }
  // Whether the fraction of sequences with every tested position right is reported too.
  virtual bool has_sequence_accuracy() const { return false; }
};

// The dataset of cfg.data.kind (text reads cfg.data.path now).
std::unique_ptr<Dataset> make_dataset(const Config& cfg);

}  // namespace strata
