// ZeRO-1's pieces that need no second process: the balanced split of the flat parameter buffer into
// one contiguous shard per rank, the single-process communicator's (no-op) ZeRO-1 collectives, and
// that AdamW run shard by shard (pointer offsets, as each rank runs it) gives bitwise the values of
// one update over the whole buffer.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/rng.h"
#include "kernels/cpu/optim.h"
#include "train/distributed.h"

using namespace strata;

TEST(ZeroShards, BalancedContiguousAndCovering) {
  for (int64_t n : {0, 1, 5, 7, 10, 64, 1001, 123457}) {
    for (int w : {1, 2, 3, 4, 7, 16}) {
      int64_t at = 0, smallest = n, largest = 0;
      for (int r = 0; r < w; ++r) {
        ShardRange s = shard_range(n, w, r);
        EXPECT_EQ(s.lo, at) << "n=" << n << " w=" << w << " r=" << r << ": shards are contiguous, in rank order";
        EXPECT_GE(s.size(), 0);
        at = s.hi;
        smallest = std::min(smallest, s.size()), largest = std::max(largest, s.size());
      }
      EXPECT_EQ(at, n) << "n=" << n << " w=" << w << ": the shards cover the buffer";
      EXPECT_LE(largest - smallest, 1) << "n=" << n << " w=" << w << ": balanced";
      std::vector<int64_t> c = shard_counts(n, w);
      ASSERT_EQ(c.size(), size_t(w));
      for (int r = 0; r < w; ++r) EXPECT_EQ(c[size_t(r)], shard_range(n, w, r).size());
    }
  }
  // The first n % w ranks carry the extra float; rank 0 starts at 0 (its full host buffer's prefix).
  EXPECT_EQ(shard_range(10, 3, 0), (ShardRange{0, 4}));
  EXPECT_EQ(shard_range(10, 3, 1), (ShardRange{4, 7}));
  EXPECT_EQ(shard_range(10, 3, 2), (ShardRange{7, 10}));
  EXPECT_EQ(shard_range(2, 4, 3), (ShardRange{2, 2}));  // more ranks than floats: empty shards
  EXPECT_EQ(shard_range(9, 1, 0), (ShardRange{0, 9}));
  EXPECT_THROW(shard_range(10, 2, 2), Error);
  EXPECT_THROW(shard_range(10, 0, 0), Error);
}

TEST(ZeroShards, SingleProcessCollectivesLeaveTheBufferAlone) {
  Communicator& w = world();
  if (w.size() != 1) GTEST_SKIP() << "skipped: this test runs as one process";
  std::vector<float> a{1, 2, 3};
  w.all_gather(a.data(), {3}, "test");
  w.gather(a.data(), {3}, 0, "test");
  w.scatter(a.data(), {3}, 0, "test");
  EXPECT_EQ(a, (std::vector<float>{1, 2, 3}));
}

TEST(ZeroShards, AdamwShardByShardIsBitwiseTheWholeUpdate) {
  const int64_t n = 70001;  // odd: shards start at unaligned offsets
  Rng rng(11, 0);
  std::vector<float> p(n), g(n), m(n), v(n);
  std::vector<uint8_t> mask(n);
  for (int64_t i = 0; i < n; ++i) {
    p[size_t(i)] = rng.normal(), g[size_t(i)] = rng.normal(), m[size_t(i)] = 0.1f * rng.normal();
    v[size_t(i)] = 0.01f * std::fabs(rng.normal()), mask[size_t(i)] = uint8_t(i % 3 != 0);
  }
  auto whole_p = p, whole_m = m, whole_v = v;
  cpu::adamw_update(whole_p.data(), g.data(), whole_m.data(), whole_v.data(), mask.data(), n, 3e-3f, 0.9f, 0.95f,
                    1e-8f, 0.1f, 5, 0.7f);
  for (int w : {2, 3, 5}) {
    auto sp = p;
    std::vector<float> all_m, all_v;
    for (int r = 0; r < w; ++r) {
      ShardRange s = shard_range(n, w, r);
      // Each rank's moments are a buffer of their own, the size of its shard.
      std::vector<float> sm(m.begin() + s.lo, m.begin() + s.hi), sv(v.begin() + s.lo, v.begin() + s.hi);
      cpu::adamw_update(sp.data() + s.lo, g.data() + s.lo, sm.data(), sv.data(), mask.data() + s.lo, s.size(), 3e-3f,
                        0.9f, 0.95f, 1e-8f, 0.1f, 5, 0.7f);
      all_m.insert(all_m.end(), sm.begin(), sm.end());
      all_v.insert(all_v.end(), sv.begin(), sv.end());
    }
    EXPECT_EQ(0, std::memcmp(sp.data(), whole_p.data(), sizeof(float) * size_t(n))) << w << " shards: parameters";
    EXPECT_EQ(0, std::memcmp(all_m.data(), whole_m.data(), sizeof(float) * size_t(n))) << w << " shards: m";
    EXPECT_EQ(0, std::memcmp(all_v.data(), whole_v.data(), sizeof(float) * size_t(n))) << w << " shards: v";
  }
}
