#include "train/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace strata {

namespace {

constexpr uint32_t kPoly = 0x82F63B78u;  // Castagnoli, bit-reversed

// Slicing-by-8 tables: kTables[k][b] is the CRC contribution of byte b followed by k zero bytes,
// so eight input bytes are folded with eight independent lookups instead of a serial chain.
using Tables = std::array<std::array<uint32_t, 256>, 8>;
constexpr Tables make_tables() {
  Tables t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    t[0][b] = c;
  }
  for (int k = 1; k < 8; ++k)
    for (uint32_t b = 0; b < 256; ++b) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFF];
  return t;
}
constexpr Tables kTables = make_tables();

// `s` is the raw register (pre- and post-inversion are done by the callers).
uint32_t update_table(uint32_t s, const uint8_t* p, size_t n) {
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);  // unaligned-safe; little-endian hosts only (x86-64, aarch64)
    uint32_t lo = uint32_t(w) ^ s, hi = uint32_t(w >> 32);
    s = kTables[7][lo & 0xFF] ^ kTables[6][(lo >> 8) & 0xFF] ^ kTables[5][(lo >> 16) & 0xFF] ^ kTables[4][lo >> 24] ^
        kTables[3][hi & 0xFF] ^ kTables[2][(hi >> 8) & 0xFF] ^ kTables[1][(hi >> 16) & 0xFF] ^ kTables[0][hi >> 24];
  }
  for (; n; --n, ++p) s = (s >> 8) ^ kTables[0][(s ^ *p) & 0xFF];
  return s;
}

#if defined(__x86_64__)
// The crc32 instruction implements exactly this polynomial; compiled for SSE4.2 regardless of
// -march so that sanitizer/debug builds checksum multi-GB checkpoints just as fast.
__attribute__((target("sse4.2"))) uint32_t update_hw(uint32_t s, const uint8_t* p, size_t n) {
  uint64_t s64 = s;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    s64 = _mm_crc32_u64(s64, w);
  }
  uint32_t s32 = uint32_t(s64);
  for (; n; --n, ++p) s32 = _mm_crc32_u8(s32, *p);
  return s32;
}
bool have_hw() {
  // A function-local static so that it is valid even when called from another file's static
  // initializer; __builtin_cpu_init is required before __builtin_cpu_supports in that case.
  static const bool have = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") != 0;
  }();
  return have;
}
#endif

}  // namespace

uint32_t crc32c_extend_table(uint32_t crc, const void* data, size_t n) {
  return ~update_table(~crc, static_cast<const uint8_t*>(data), n);
}

uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n) {
#if defined(__x86_64__)
  if (have_hw()) return ~update_hw(~crc, static_cast<const uint8_t*>(data), n);
#endif
  return crc32c_extend_table(crc, data, n);
}

uint32_t crc32c(const void* data, size_t n) { return crc32c_extend(0, data, n); }

}  // namespace strata
