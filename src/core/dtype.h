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

// bf16 is the top half of an fp32; rounding to nearest even keeps the storage error unbiased. NaNs
// keep their payload (made quiet). Also compiled for the GPU, so that the CUDA cast rounds exactly
// as this one (cuda_bf16.h's __float2bfloat16_rn canonicalises NaNs instead).
#ifdef __CUDACC__
__host__ __device__
#endif
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
#ifdef __CUDA_ARCH__
  u = __float_as_uint(f);
#else
  std::memcpy(&u, &f, 4);
#endif
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

// IEEE binary16 (1 sign, 5 exponent, 10 mantissa bits; bias 15), rounded to nearest even like
// numpy's astype(float16): overflow goes to inf, tiny values to subnormals or signed zero, NaN stays NaN.
inline uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // quiet NaN
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 (half-way past 65504): inf
  if (a >= 0x38800000u) {                                  // >= 2^-14: normal; rebias 127 -> 15
    uint32_t v = a - 0x38000000u;
    v += 0xfffu + ((v >> 13) & 1u);  // round to nearest even; a carry into the exponent is correct
    return uint16_t(sign | (v >> 13));
  }
  if (a < 0x33000000u) return sign;  // < 2^-25 (half the smallest subnormal): signed zero
  // Subnormal: the result counts units of 2^-24; the 24-bit significand m times 2^(e-126) of them.
  const uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u, shift = 126 - e;  // shift in [14, 24]
  uint32_t r = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
  if (rem > half || (rem == half && (r & 1u))) ++r;  // may round up to 0x400, the smallest normal
  return uint16_t(sign | r);
}
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  uint32_t u;
  if (e == 0x1f) {
    u = sign | 0x7f800000u | (m << 13);  // inf / NaN
  } else if (e != 0) {
    u = sign | ((e + 112) << 23) | (m << 13);
  } else {
    float v = float(m) * 0x1p-24f;  // zero or subnormal: exact in fp32
    return sign ? -v : v;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace strata
