#include "train/synthetic_selective_copying.h"

#include <algorithm>

#include "core/error.h"

namespace strata {

SyntheticTask selective_copying_task(const SelectiveCopyingConfig& cfg) {
  const int64_t V = cfg.vocab, n = cfg.tokens, noise = cfg.noise_token, marker = V - 1;
  if (V < 3)
    throw InputError(fmt::format("data.selective_copying.vocab={} must be >= 3: the noise token, the copy marker "
                                 "(vocab - 1) and at least one data symbol", V));
  if (n < 1) throw InputError(fmt::format("data.selective_copying.tokens={} must be >= 1", n));
  if (noise < 0 || noise >= marker)
    throw InputError(fmt::format("data.selective_copying.noise_token={} must be in [0, vocab - 2 = {}] (vocab - 1 is the "
                                 "copy marker)", noise, V - 2));
  SyntheticTask t;
  t.kind = "selective_copying";
  t.vocab = V;
  t.vocab_key = "data.selective_copying.vocab";
  t.min_seq = 2 * n;
  t.min_seq_rule = fmt::format("2 * data.selective_copying.tokens = 2 * {} = {} (the tokens, then as many copy markers)", n,
                               t.min_seq);
  t.sequence_metric = true;
  t.generate = [V, n, noise, marker](int32_t* ids, int32_t* targets, int64_t T, Rng& rng) {
    const int64_t M = T - n;  // the region to memorise
    STRATA_CHECK(M >= n, "selective_copying: a sequence of {} has no room for {} tokens and their copies", T, n);
    std::vector<int64_t> pos;
    sample_distinct(pos, M, n, rng);
    std::sort(pos.begin(), pos.end());
    for (int64_t i = 0; i < T; ++i) ids[i] = int32_t(noise), targets[i] = -1;
    for (int64_t i = 0; i < n; ++i) {
      int64_t s = int64_t(rng.below(uint64_t(V - 2)));  // one of [0, V - 1) without the noise token
      int32_t sym = int32_t(s >= noise ? s + 1 : s);
      ids[pos[size_t(i)]] = sym;
      ids[M + i] = int32_t(marker);
      targets[M + i] = sym;
    }
  };
  return t;
}

}  // namespace strata
