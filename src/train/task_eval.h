#pragma once
// The synthetic tasks' evaluation (data.kind mqar, selective_copying, induction_heads): the loss and
// the accuracy over the tested positions of the fixed validation sequences, at train.seq and at every
// data.eval_seqs length. Every length sees the same number of sequences (train.batch *
// train.eval_batches), in forwards of at most train.batch * train.seq tokens (one sequence at least),
// so a long length costs time, not memory. At train.seq the forwards are exactly the val_batch()es.
#include <cstdint>
#include <string>
#include <vector>

#include "core/arena.h"
#include "models/model.h"
#include "train/accuracy.h"
#include "train/distributed.h"
#include "train/synthetic_data.h"

namespace strata {

struct LengthEval {
  int64_t seq = 0;
  double loss = 0;  // mean over the tested positions
  Accuracy acc;
};

// With W ranks, rank r evaluates the forwards f with f % W == r and the results are summed over
// `comm`, so every rank returns the same numbers.
std::vector<LengthEval> evaluate_task(Model& model, Ctx& ctx, const SyntheticData& data, const std::vector<int64_t>& seqs,
                                      int64_t B, int64_t T, int64_t batches, Communicator& comm);

// The metric names of one length: "val_acc" at train.seq, "val_acc@L" elsewhere (and likewise
// val_loss, val_seq_acc); TensorBoard tags "val/acc", "val/acc@L".
std::string eval_suffix(int64_t seq, int64_t train_seq);

}  // namespace strata
