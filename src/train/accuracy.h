#pragma once
// The synthetic tasks' accuracy: over the tested positions (target >= 0), the fraction whose argmax
// prediction is the target; and the fraction of sequences whose every tested position is right
// (selective copying's "whole sequence copied"). Counts, so batches and ranks add up exactly.
#include <cstdint>

namespace strata {

struct Accuracy {
  int64_t tested = 0, correct = 0;          // positions
  int64_t sequences = 0, all_correct = 0;   // sequences with at least one tested position
  void add(const Accuracy& o) {
    tested += o.tested, correct += o.correct, sequences += o.sequences, all_correct += o.all_correct;
  }
  double token() const { return tested ? double(correct) / double(tested) : 0.0; }
  double sequence() const { return sequences ? double(all_correct) / double(sequences) : 0.0; }
};

// pred, targets[B, T] (pred: the argmax ids, Model::eval_loss).
Accuracy accuracy_of(const int32_t* pred, const int32_t* targets, int64_t B, int64_t T);

}  // namespace strata
