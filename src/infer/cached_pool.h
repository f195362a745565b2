#pragma once
// A pool of fixed-size memory units (KV pages, Mamba state slots) with reference counts and a
// prefix cache. The engine uses one for KV pages and one for state slots:
// - a unit is free, held (refcount > 0: a running sequence's page or slot), or cached and idle
//   (refcount 0, still holding a published prefix: a full KV page, a state snapshot);
// - publish() files a held unit under a prefix key (infer/prefix_hash.h); lookup() finds it, and
//   retain() shares it (a page) or pins it while it is copied (a snapshot);
// - allocate() takes a free unit first and otherwise evicts the least recently used idle cached
//   one, so cached prefixes cost nothing until memory is needed.
// Only units whose content never changes again may be published (a full page, a snapshot): a
// partially filled page is never shared. Not thread-safe (the engine's stepping thread owns it).
#include <cstddef>
#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

namespace strata {

class CachedPool {
 public:
  explicit CachedPool(int64_t units);

  int64_t total() const { return int64_t(ref_.size()); }
  int64_t held() const { return held_; }                        // refcount > 0
  int64_t cached() const { return int64_t(by_key_.size()); }    // published, held or idle
  int64_t available() const { return int64_t(free_.size() + lru_.size()); }  // allocate() succeeds this often

  // A unit with refcount 1 and no key; -1 when every unit is held.
  int32_t allocate();
  void retain(int32_t unit);
  // refcount - 1; at 0 a cached unit becomes idle (most recently used), an uncached one free.
  void release(int32_t unit);
  // The unit cached under `key`, or -1.
  int32_t lookup(uint64_t key) const;
  // Files held `unit` under `key`; false (unit stays private) when the key is cached already.
  bool publish(int32_t unit, uint64_t key);
  int32_t refcount(int32_t unit) const { return ref_[size_t(unit)]; }
  bool is_cached(int32_t unit) const { return cached_[size_t(unit)]; }

 private:
  void check_unit(int32_t unit) const;

  std::vector<int32_t> ref_;
  std::vector<uint64_t> key_;
  std::vector<bool> cached_;
  std::vector<std::list<int32_t>::iterator> lru_pos_;  // valid while idle and cached
  std::list<int32_t> lru_;                             // idle cached units, least recently used first
  std::vector<int32_t> free_;                          // a stack: the most recently freed first
  std::unordered_map<uint64_t, int32_t> by_key_;
  int64_t held_ = 0;
};

}  // namespace strata
