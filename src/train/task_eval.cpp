#include "train/task_eval.h"

#include <algorithm>

namespace strata {

std::vector<LengthEval> evaluate_task(Model& model, Ctx& ctx, const SyntheticData& data, const std::vector<int64_t>& seqs,
                                      int64_t B, int64_t T, int64_t batches, Communicator& comm) {
  const int W = comm.size(), rank = comm.rank();
  const int64_t total = B * batches;  // sequences at every length
  std::vector<LengthEval> out;
  std::vector<double> sums;  // per length: loss * tested, tested, correct, sequences, all correct
  std::vector<int32_t> ids, tgt, pred;
  for (int64_t L : seqs) {
    const int64_t rows = std::clamp<int64_t>(B * T / L, 1, B);
    ids.resize(size_t(rows * L)), tgt.resize(size_t(rows * L)), pred.resize(size_t(rows * L));
    double loss_sum = 0;
    Accuracy acc;
    int64_t f = 0;
    for (int64_t k0 = 0; k0 < total; k0 += rows, ++f) {
      if (f % W != rank) continue;
      const int64_t n = std::min(rows, total - k0);
      ctx.arena->reset();
      data.val_rows(ids.data(), tgt.data(), k0, n, L);
      const float loss = model.eval_loss(ctx, ids.data(), tgt.data(), n, L, pred.data());
      const Accuracy a = accuracy_of(pred.data(), tgt.data(), n, L);
      loss_sum += double(loss) * double(a.tested);
      acc.add(a);
    }
    sums.insert(sums.end(), {loss_sum, double(acc.tested), double(acc.correct), double(acc.sequences), double(acc.all_correct)});
  }
  if (W > 1) comm.sum(sums.data(), int(sums.size()), "the validation accuracy");
  for (size_t i = 0; i < seqs.size(); ++i) {
    const double* s = &sums[5 * i];
    LengthEval e;
    e.seq = seqs[i];
    e.acc = {int64_t(s[1]), int64_t(s[2]), int64_t(s[3]), int64_t(s[4])};
    e.loss = s[1] > 0 ? s[0] / s[1] : 0.0;
    out.push_back(e);
  }
  return out;
}

std::string eval_suffix(int64_t seq, int64_t train_seq) { return seq == train_seq ? "" : "@" + std::to_string(seq); }

}  // namespace strata
