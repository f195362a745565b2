// CachedPool: the KV page / state slot pool with refcounts and an LRU prefix cache.
#include <gtest/gtest.h>

#include "core/error.h"
#include "infer/cached_pool.h"
#include "infer/prefix_hash.h"

using namespace strata;

TEST(CachedPool, AllocatesEveryUnitOnceThenFails) {
  CachedPool p(3);
  EXPECT_EQ(p.available(), 3);
  int32_t a = p.allocate(), b = p.allocate(), c = p.allocate();
  EXPECT_EQ(p.allocate(), -1);
  EXPECT_NE(a, b);
  EXPECT_NE(b, c);
  EXPECT_NE(a, c);
  EXPECT_EQ(p.held(), 3);
  EXPECT_EQ(p.available(), 0);
  p.release(b);
  EXPECT_EQ(p.allocate(), b);
}

TEST(CachedPool, PublishedUnitsStayCachedUntilEvictedLeastRecentlyUsedFirst) {
  CachedPool p(3);
  int32_t a = p.allocate(), b = p.allocate(), c = p.allocate();
  EXPECT_TRUE(p.publish(a, 100));
  EXPECT_TRUE(p.publish(b, 200));
  EXPECT_FALSE(p.publish(c, 100));  // the key is taken: c stays private
  p.release(b);                     // idle: b, then a
  p.release(a);
  p.release(c);  // uncached: free
  EXPECT_EQ(p.held(), 0);
  EXPECT_EQ(p.cached(), 2);
  EXPECT_EQ(p.available(), 3);
  EXPECT_EQ(p.lookup(100), a);
  EXPECT_EQ(p.lookup(200), b);
  EXPECT_EQ(p.allocate(), c);  // the free unit before any cached one
  EXPECT_EQ(p.allocate(), b);  // then the least recently used idle one, which leaves the cache
  EXPECT_EQ(p.lookup(200), -1);
  EXPECT_EQ(p.lookup(100), a);
}

TEST(CachedPool, RetainPinsAnIdleCachedUnitAndSharing) {
  CachedPool p(2);
  int32_t a = p.allocate();
  p.publish(a, 7);
  p.release(a);
  p.retain(a);  // a prefix hit: shared, not evictable
  p.retain(a);  // and a second sequence
  EXPECT_EQ(p.refcount(a), 2);
  EXPECT_EQ(p.available(), 1);
  int32_t b = p.allocate();
  EXPECT_NE(b, a);
  EXPECT_EQ(p.allocate(), -1);
  p.release(a);
  EXPECT_EQ(p.allocate(), -1);  // still held once
  p.release(a);
  EXPECT_EQ(p.allocate(), a);
  EXPECT_EQ(p.lookup(7), -1);
}

TEST(CachedPool, MisuseIsAnError) {
  CachedPool p(2);
  EXPECT_THROW(p.release(0), Error);  // not held
  EXPECT_THROW(p.retain(1), Error);   // free
  EXPECT_THROW(p.publish(0, 1), Error);
  EXPECT_THROW(p.release(5), Error);
}

TEST(PrefixHash, KeysNameTheWholePrefix) {
  int32_t x[4] = {1, 2, 3, 4}, y[4] = {1, 2, 3, 5};
  uint64_t a0 = prefix_block_key(0, x, 2), b0 = prefix_block_key(0, y, 2);
  EXPECT_EQ(a0, b0);
  EXPECT_NE(prefix_block_key(a0, x + 2, 2), prefix_block_key(b0, y + 2, 2));
  int32_t z[2] = {9, 9};
  // The same block after another parent.
  EXPECT_NE(prefix_block_key(a0, z, 2), prefix_block_key(prefix_block_key(0, y + 2, 2), z, 2));
}
