#pragma once
// A weight quantised for the kernel tests (kernels/cpu/quant_gemm.h): its bytes and scales, owned.
#include <cstdint>
#include <vector>

#include "kernels/cpu/quant_gemm.h"

namespace strata::testing {

struct Quantised {
  int bits;
  int64_t N, K;
  std::vector<uint8_t> q;
  std::vector<float> scales;
  QuantWeight view() const { return {bits, N, K, q.data(), scales.data()}; }
};

inline Quantised quantise(int bits, const std::vector<float>& w, int64_t N, int64_t K) {
  Quantised r{bits, N, K, std::vector<uint8_t>(size_t(quant_bytes(bits, N, K))),
              std::vector<float>(size_t(quant_scales(bits, N, K)))};
  cpu::quantize_weight(bits, w.data(), N, K, r.q.data(), r.scales.data());
  return r;
}

}  // namespace strata::testing
