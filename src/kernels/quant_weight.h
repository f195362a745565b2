#pragma once
// The storage format of a weight-only quantised linear weight, shared by the CPU and CUDA twins of
// kernels/{cpu,cuda}/quant_gemm.h, and its check. Plain data: the bytes live wherever the caller put them (host
// memory for the CPU kernels, device memory for the CUDA ones).
//
// The weight is W[N, K] in the Hugging Face layout (out x in, row-major), as the Linear layers store it.
//   int8: per output row n one scale s[n] = max_k |W[n, k]| / 127; q[n, k] = round(W[n, k] / s[n])
//         in [-127, 127] (two's complement bytes), row-major N x K; any K.
//   int4: groups of 32 consecutive k within a row, one scale per group s[n, g] = max |W| / 7 over the
//         group; q = round(W / s) in [-7, 7] (symmetric: -8 is never used), stored as q + 8 in a
//         nibble. K must be a multiple of 32 (kQuantGroup): kernels and the quantiser refuse others
//         rather than pad, and the model quantiser keeps such weights at 8 bits. Row n, group g is
//         16 bytes at q + n * K / 2 + g * 16; byte j (0..15) holds k = 32 g + j in its low nibble and
//         k = 32 g + 16 + j in its high nibble (llama.cpp's Q4_0 order, so that one 16-byte load
//         unpacks into two runs of 16 consecutive k). Scales row-major N x K/32.
// Dequantised value: s * q. |W - s q| <= s / 2 for every element (round to nearest).
#include <cstdint>

#include "core/error.h"

namespace strata {

inline constexpr int64_t kQuantGroup = 32;  // int4 group length along K

struct QuantWeight {
  int bits = 0;  // 8 or 4
  int64_t N = 0, K = 0;
  const uint8_t* q = nullptr;      // quant_bytes(bits, N, K) bytes
  const float* scales = nullptr;   // quant_scales(bits, N, K) floats
};

// Error (naming `what`, the calling kernel) unless w's bits and shape are a valid format; every
// CPU and CUDA quantised kernel checks its weight with it.
inline void check_quant_weight(const QuantWeight& w, const char* what) {
  STRATA_CHECK(w.bits == 8 || w.bits == 4, "{}: bits {} (expected 8 or 4)", what, w.bits);
  STRATA_CHECK(w.N >= 0 && w.K >= 0 && (w.bits == 8 || w.K % kQuantGroup == 0),
               "{}: invalid int{} weight shape [{}, {}] (int4 needs K a multiple of {})", what, w.bits, w.N, w.K,
               kQuantGroup);
}

inline int64_t quant_bytes(int bits, int64_t N, int64_t K) { return bits == 4 ? N * K / 2 : N * K; }
inline int64_t quant_scales(int bits, int64_t N, int64_t K) { return bits == 4 ? N * (K / kQuantGroup) : N; }

}  // namespace strata
