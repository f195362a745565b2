#pragma once
#include <cstdint>
#include <cstring>
#include <string_view>

namespace strata {

enum class DType : uint8_t { f32, bf16, f16, i32, i8 };
enum class Device : uint8_t { cpu, cuda };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);
std::string_view device_name(Device d);

// bf16 is the top half of an fp32; rounding to nearest even keeps the storage error unbiased.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace strata
