#pragma once
// A synthetic task (data.kind mqar, selective_copying, induction_heads; docs/research.md): a generator
// of one sequence of any length T >= min_seq from a Philox stream. It writes ids[T] and targets[T];
// targets are -1 (ignored by the loss and the accuracy) except at the positions the task tests, where
// they are the id the model must predict after reading ids[0..t].
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/rng.h"
#include "models/config.h"

namespace strata {

struct SyntheticTask {
  std::string kind;              // its data.kind
  int64_t vocab = 0;             // every id is in [0, vocab)
  std::string vocab_key;         // the key that sets it, e.g. "data.mqar.vocab"
  int64_t min_seq = 1;           // the shortest sequence the generator fills
  std::string min_seq_rule;      // how min_seq follows from the keys, for messages
  bool sequence_metric = false;  // the fraction of fully correct sequences is reported (selective copying)
  std::function<void(int32_t* ids, int32_t* targets, int64_t T, Rng& rng)> generate;
};

bool is_synthetic_kind(const std::string& kind);
std::string synthetic_kinds();  // "mqar, selective_copying, induction_heads"
// The task of data.kind (a synthetic kind) with its keys; InputError naming the key if one is out of
// its range (the config loader reports them first, with file and line).
SyntheticTask synthetic_task(const DataConfig& data);

// data.eval_seqs: space-separated positive lengths ("256 1024 4096"; "" = none), in order, without
// repeats. InputError naming the bad entry.
std::vector<int64_t> parse_eval_seqs(const std::string& text);

// k distinct integers drawn uniformly from [0, n), in random order (Floyd's algorithm, then a shuffle):
// the generators' sampling without replacement, O(k^2) draws-independent of n.
void sample_distinct(std::vector<int64_t>& out, int64_t n, int64_t k, Rng& rng);

}  // namespace strata
