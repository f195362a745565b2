#pragma once
// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum of TFRecord framing and of
// every checkpoint dataset. crc32c("123456789") == 0xE3069283.
#include <cstddef>
#include <cstdint>

namespace strata {

// CRC of data[0, n). `crc32c_extend(crc32c(a), b)` equals the CRC of the concatenation a || b.
uint32_t crc32c(const void* data, size_t n);
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n);

// The portable table-driven path (slicing-by-8). crc32c() uses the SSE4.2 instruction where the
// CPU has it; this one stays callable so tests can hold the two against each other.
uint32_t crc32c_extend_table(uint32_t crc, const void* data, size_t n);

// TFRecord stores masked CRCs, because a CRC of data that itself contains CRCs is weak.
inline uint32_t crc32c_mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

}  // namespace strata
