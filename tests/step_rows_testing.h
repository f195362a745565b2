#pragma once
// Ragged serving schedules for the step_rows tests (tests/test_step_rows.cpp on the CPU,
// tests/cuda/test_cuda_step_rows.cpp on the GPU): several sequences through one ModelRunner.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/rng.h"
#include "infer/model_runner.h"
#include "model_testing.h"
#include "models/model.h"

namespace strata::testing {

constexpr int64_t kPage = 4;

// A schedule of several sequences through one runner. Each sequence gets its pages (a random
// permutation of the pool) and its state slot (a permutation too) up front; every iteration takes a
// random subset of the unfinished sequences, in random order, each with a chunk of 1..max_chunk
// rows. Returns the logits of every position of every sequence: [seq][pos * V ...].
struct Schedule {
  uint64_t seed = 1;
  int64_t max_chunk = 6;
  bool one_at_a_time = false;  // a single sequence per iteration
};

inline std::vector<std::vector<float>> run_schedule(Model& m, const std::vector<std::vector<int32_t>>& seqs,
                                                    const Schedule& sc, int64_t row_tile = 16) {
  const int64_t S = int64_t(seqs.size()), V = m.vocab();
  int64_t longest = 0;
  for (auto& s : seqs) longest = std::max<int64_t>(longest, int64_t(s.size()));
  PoolSizes ps;
  ps.page_size = kPage;
  ps.max_pages = (longest + kPage - 1) / kPage + 1;
  ps.num_pages = S * ps.max_pages + 3;
  ps.num_state_slots = S + 2;
  auto runner = make_model_runner(m, ps, RunnerOptions{row_tile});
  Rng r(sc.seed);
  std::vector<int32_t> pages(size_t(ps.num_pages)), slots(size_t(ps.num_state_slots));
  std::iota(pages.begin(), pages.end(), 0);
  std::iota(slots.begin(), slots.end(), 0);
  for (int64_t i = int64_t(pages.size()) - 1; i > 0; --i) std::swap(pages[size_t(i)], pages[r.below(uint64_t(i + 1))]);
  for (int64_t i = int64_t(slots.size()) - 1; i > 0; --i) std::swap(slots[size_t(i)], slots[r.below(uint64_t(i + 1))]);
  std::vector<std::vector<int32_t>> table(static_cast<size_t>(S));
  for (int64_t s = 0; s < S; ++s)
    for (int64_t j = 0; j < ps.max_pages; ++j) table[size_t(s)].push_back(pages[size_t(s * ps.max_pages + j)]);
  if (runner->uses_state_slots())
    for (int64_t s = 0; s < S; ++s) runner->reset_state(slots[size_t(s)]);

  std::vector<std::vector<float>> out(static_cast<size_t>(S));
  for (int64_t s = 0; s < S; ++s) out[size_t(s)].assign(seqs[size_t(s)].size() * size_t(V), NAN);
  std::vector<int64_t> done(size_t(S), 0);
  for (;;) {
    std::vector<int64_t> live;
    for (int64_t s = 0; s < S; ++s)
      if (done[size_t(s)] < int64_t(seqs[size_t(s)].size())) live.push_back(s);
    if (live.empty()) break;
    for (int64_t i = int64_t(live.size()) - 1; i > 0; --i) std::swap(live[size_t(i)], live[r.below(uint64_t(i + 1))]);
    const int64_t take = sc.one_at_a_time ? 1 : 1 + int64_t(r.below(uint64_t(live.size())));
    RowBatch b;
    b.max_pages = ps.max_pages;
    std::vector<std::pair<int64_t, int64_t>> where;  // (seq, pos) of each row
    for (int64_t k = 0; k < take; ++k) {
      const int64_t s = live[size_t(k)], left = int64_t(seqs[size_t(s)].size()) - done[size_t(s)];
      const int64_t len = std::min<int64_t>(left, 1 + int64_t(r.below(uint64_t(sc.max_chunk))));
      for (int64_t j = 0; j < len; ++j) {
        const int64_t p = done[size_t(s)] + j;
        b.ids.push_back(seqs[size_t(s)][size_t(p)]);
        b.pos.push_back(int32_t(p));
        b.seq.push_back(int32_t(k));
        b.logits_rows.push_back(int32_t(b.ids.size() - 1));
        where.emplace_back(s, p);
      }
      done[size_t(s)] += len;
      b.block_table.insert(b.block_table.end(), table[size_t(s)].begin(), table[size_t(s)].end());
      b.state_slot.push_back(runner->uses_state_slots() ? slots[size_t(s)] : -1);
    }
    std::vector<float> logits(b.logits_rows.size() * size_t(V));
    runner->run(b, logits.data());
    for (size_t i = 0; i < where.size(); ++i)
      std::copy_n(logits.begin() + int64_t(i) * V, V,
                  out[size_t(where[i].first)].begin() + where[i].second * V);
  }
  return out;
}

inline std::vector<std::vector<int32_t>> random_seqs(const std::vector<int64_t>& lens, uint64_t seed) {
  std::vector<std::vector<int32_t>> s;
  for (size_t i = 0; i < lens.size(); ++i) s.push_back(strata::testing::random_tokens(lens[i], seed + i));
  return s;
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, double(std::fabs(a[i] - b[i])));
  return std::isnan(d) ? INFINITY : d;
}

}  // namespace strata::testing
