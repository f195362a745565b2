#include "infer/cached_pool.h"

#include "core/error.h"

namespace strata {

CachedPool::CachedPool(int64_t units)
    : ref_(size_t(units), 0), key_(size_t(units), 0), cached_(size_t(units), false), lru_pos_(size_t(units)) {
  STRATA_CHECK(units >= 0 && units < (int64_t(1) << 31), "CachedPool: {} units", units);
  free_.reserve(size_t(units));
  for (int64_t u = units - 1; u >= 0; --u) free_.push_back(int32_t(u));  // unit 0 comes out first
}

void CachedPool::check_unit(int32_t unit) const {
  STRATA_CHECK(unit >= 0 && unit < int32_t(ref_.size()), "CachedPool: unit {} outside [0, {})", unit, ref_.size());
}

int32_t CachedPool::allocate() {
  int32_t u;
  if (!free_.empty()) {
    u = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {
    u = lru_.front();
    lru_.pop_front();
    by_key_.erase(key_[size_t(u)]);
    cached_[size_t(u)] = false;
  } else {
    return -1;
  }
  ref_[size_t(u)] = 1;
  ++held_;
  return u;
}

void CachedPool::retain(int32_t unit) {
  check_unit(unit);
  int32_t& r = ref_[size_t(unit)];
  if (r == 0) {
    STRATA_CHECK(cached_[size_t(unit)], "CachedPool: retain of free unit {}", unit);
    lru_.erase(lru_pos_[size_t(unit)]);
    ++held_;
  }
  ++r;
}

void CachedPool::release(int32_t unit) {
  check_unit(unit);
  int32_t& r = ref_[size_t(unit)];
  STRATA_CHECK(r > 0, "CachedPool: release of unit {} that is not held", unit);
  if (--r > 0) return;
  --held_;
  if (cached_[size_t(unit)]) {
    lru_pos_[size_t(unit)] = lru_.insert(lru_.end(), unit);
  } else {
    free_.push_back(unit);
  }
}

int32_t CachedPool::lookup(uint64_t key) const {
  auto it = by_key_.find(key);
  return it == by_key_.end() ? -1 : it->second;
}

bool CachedPool::publish(int32_t unit, uint64_t key) {
  check_unit(unit);
  STRATA_CHECK(ref_[size_t(unit)] > 0 && !cached_[size_t(unit)],
               "CachedPool: publish of unit {} (refcount {}, cached {})", unit, ref_[size_t(unit)], bool(cached_[size_t(unit)]));
  if (!by_key_.emplace(key, unit).second) return false;
  key_[size_t(unit)] = key;
  cached_[size_t(unit)] = true;
  return true;
}

}  // namespace strata
