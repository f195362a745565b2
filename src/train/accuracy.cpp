#include "train/accuracy.h"

namespace strata {

Accuracy accuracy_of(const int32_t* pred, const int32_t* targets, int64_t B, int64_t T) {
  Accuracy a;
  for (int64_t b = 0; b < B; ++b) {
    int64_t tested = 0, correct = 0;
    for (int64_t t = b * T; t < (b + 1) * T; ++t) {
      if (targets[t] < 0) continue;
      ++tested;
      correct += pred[t] == targets[t];
    }
    a.tested += tested;
    a.correct += correct;
    if (tested == 0) continue;
    ++a.sequences;
    a.all_correct += correct == tested;
  }
  return a;
}

}  // namespace strata
