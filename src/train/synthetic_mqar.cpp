#include "train/synthetic_mqar.h"

#include <cmath>

#include "core/error.h"

namespace strata {

namespace {
double uniform_double(Rng& rng) {  // [0, 1) with 53 bits
  uint64_t hi = rng.next_u32() >> 5, lo = rng.next_u32() >> 6;
  return double(hi * 67108864 + lo) * (1.0 / 9007199254740992.0);
}
}  // namespace

void power_law_gaps(std::vector<int64_t>& gaps, int64_t space, int64_t k, double power_a, Rng& rng) {
  STRATA_CHECK(k >= 0 && k <= space, "power_law_gaps: {} of {}", k, space);
  std::vector<double> w(static_cast<size_t>(space));
  for (int64_t g = 0; g < space; ++g) w[size_t(g)] = std::pow(double(g + 1), power_a - 1.0);
  gaps.clear();
  for (int64_t q = 0; q < k; ++q) {
    double total = 0;
    for (double x : w) total += x;
    const double u = uniform_double(rng) * total;
    double acc = 0;
    int64_t pick = -1, last = -1;
    for (int64_t g = 0; g < space; ++g) {
      if (w[size_t(g)] == 0) continue;
      last = g;
      acc += w[size_t(g)];
      if (acc > u) {
        pick = g;
        break;
      }
    }
    if (pick < 0) pick = last;  // rounding at the very end of the sum
    gaps.push_back(pick);
    w[size_t(pick)] = 0;
  }
}

SyntheticTask mqar_task(const MqarConfig& cfg) {
  const int64_t V = cfg.vocab, P = cfg.pairs, Q = cfg.queries == 0 ? cfg.pairs : cfg.queries;
  const double a = cfg.power_a;
  if (P < 1) throw InputError(fmt::format("data.mqar.pairs={} must be >= 1", P));
  if (Q < 0 || Q > P) throw InputError(fmt::format("data.mqar.queries={} must be in [0, data.mqar.pairs={}] (0 = pairs)", cfg.queries, P));
  if (V / 2 - 1 < P)
    throw InputError(fmt::format("data.mqar.vocab={} has {} key ids ([1, vocab/2)), fewer than data.mqar.pairs={} distinct keys",
                                 V, V / 2 - 1, P));
  if (!(a > 0)) throw InputError(fmt::format("data.mqar.power_a={} must be > 0", a));
  SyntheticTask t;
  t.kind = "mqar";
  t.vocab = V;
  t.vocab_key = "data.mqar.vocab";
  t.min_seq = 2 * P + 2 * Q;
  t.min_seq_rule = fmt::format("2 * data.mqar.pairs + 2 * queries = 2 * {} + 2 * {} = {} (the pairs, then room for every "
                               "query)", P, Q, t.min_seq);
  t.generate = [V, P, Q, a](int32_t* ids, int32_t* targets, int64_t T, Rng& rng) {
    const int64_t half = V / 2, context = 2 * P, space = (T - context) / 2;
    STRATA_CHECK(space >= Q, "mqar: a sequence of {} has no room for {} pairs and {} queries", T, P, Q);
    std::vector<int64_t> keys, values, gaps;
    sample_distinct(keys, half - 1, P, rng);
    sample_distinct(values, V - half, P, rng);
    for (int64_t p = 0; p < P; ++p) {
      ids[2 * p] = int32_t(keys[size_t(p)] + 1);
      ids[2 * p + 1] = int32_t(values[size_t(p)] + half);
    }
    // Zoology's random_non_queries: the query region is noise except at the queries.
    for (int64_t i = context; i < T; ++i) ids[i] = int32_t(rng.below(uint64_t(V)));
    for (int64_t i = 0; i < T; ++i) targets[i] = -1;
    power_law_gaps(gaps, space, Q, a, rng);
    for (int64_t q = 0; q < Q; ++q) {  // the first Q keys: a random subset, as the keys come shuffled
      const int64_t pos = context + 2 * gaps[size_t(q)];
      ids[pos] = int32_t(keys[size_t(q)] + 1);
      targets[pos] = int32_t(values[size_t(q)] + half);
    }
  };
  return t;
}

}  // namespace strata
