#pragma once
// Multi-query associative recall as Zoology generates it (Arora, Eyuboglu et al. 2023,
// zoology/data/multiquery_ar.py): each sequence opens with `pairs` key-value pairs (keys distinct,
// from [1, vocab/2); values distinct, from [vocab/2, vocab)), then the rest is uniform random tokens
// in which `queries` of the keys reappear at even offsets 2 * gap after the pairs, the gaps drawn
// without replacement with probability ~ (gap + 1)^(power_a - 1). The target at a query is its
// key's value; every other target is -1. A longer T keeps the pairs and widens the query region.
#include "train/synthetic_task.h"

namespace strata {

SyntheticTask mqar_task(const MqarConfig& cfg);

// Fills gaps with k distinct integers of [0, space), each draw proportional to (g + 1)^(power_a - 1)
// among those left (numpy's choice(replace=False, p=...)).
void power_law_gaps(std::vector<int64_t>& gaps, int64_t space, int64_t k, double power_a, Rng& rng);

}  // namespace strata
