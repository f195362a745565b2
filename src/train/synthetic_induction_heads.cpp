#include "train/synthetic_induction_heads.h"

#include "core/error.h"

namespace strata {

SyntheticTask induction_heads_task(const InductionHeadsConfig& cfg) {
  const int64_t V = cfg.vocab;
  if (V < 2) throw InputError(fmt::format("data.induction_heads.vocab={} must be >= 2: the trigger and other tokens", V));
  if (cfg.trigger < -1 || cfg.trigger >= V)
    throw InputError(fmt::format("data.induction_heads.trigger={} must be in [0, vocab - 1 = {}], or -1 (= vocab - 1)",
                                 cfg.trigger, V - 1));
  const int64_t trigger = cfg.trigger < 0 ? V - 1 : cfg.trigger;
  SyntheticTask t;
  t.kind = "induction_heads";
  t.vocab = V;
  t.vocab_key = "data.induction_heads.vocab";
  t.min_seq = 3;
  t.min_seq_rule = "3 (the trigger, its successor and the trigger again)";
  t.generate = [V, trigger](int32_t* ids, int32_t* targets, int64_t T, Rng& rng) {
    STRATA_CHECK(T >= 3, "induction_heads: a sequence of {} is shorter than 3", T);
    auto other = [&] {  // uniform over the ids that are not the trigger
      int64_t s = int64_t(rng.below(uint64_t(V - 1)));
      return int32_t(s >= trigger ? s + 1 : s);
    };
    for (int64_t i = 0; i < T; ++i) ids[i] = other(), targets[i] = -1;
    const int64_t p = int64_t(rng.below(uint64_t(T - 2)));  // [0, T - 3]: the answer precedes the last token
    const int32_t answer = other();
    ids[p] = int32_t(trigger);
    ids[p + 1] = answer;
    ids[T - 1] = int32_t(trigger);
    targets[T - 1] = answer;
  };
  return t;
}

}  // namespace strata
