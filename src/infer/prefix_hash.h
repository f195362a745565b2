#pragma once
// Prefix-cache keys (vLLM / SGLang style): block i of a sequence (tokens [i*B, (i+1)*B)) is keyed by
// the hash of (block i-1's key, its B tokens), so a key names the whole prefix up to the end of its
// block and two sequences share block i's key only when they share every token before it. The
// engine keys KV pages and Mamba state snapshots with the same chain (a snapshot taken after
// position (i+1)*B is keyed like page i), so pure-Mamba models get the same keys without pages.
//
// 64 bits, not verified against the tokens: a collision (odds ~ n^2 / 2^64 for n cached blocks)
// would serve another prefix's cache.
#include <cstdint>

namespace strata {

inline uint64_t mix64(uint64_t x) {  // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The key of a block of n tokens whose preceding prefix has key `parent` (0 for the first block).
inline uint64_t prefix_block_key(uint64_t parent, const int32_t* tokens, int64_t n) {
  uint64_t h = mix64(parent ^ 0x9e3779b97f4a7c15ull);
  for (int64_t i = 0; i < n; ++i) h = mix64(h ^ (uint64_t(uint32_t(tokens[i])) + 0x632be59bd9b4e019ull));
  return h;
}

}  // namespace strata
