// Weight-only int8 / int4 linear kernels (kernels/cpu/quant_gemm.h): the quantiser's error bound
// (|w - dq(q(w))| <= s / 2, scales as documented), the packing of int4 nibbles, and
// quant_linear_forward against a double-precision product with the dequantised weights, for every
// GEMV ISA path this CPU has (each forced in turn) and the prefill path (M >= 8), at odd shapes.
// Tolerance: 1e-5 relative to sum_k |x_k w_k| (fp32 accumulation in another order than the reference).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/quant_gemm.h"
#include "quant_testing.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;

namespace {

using st::Quantised;
using st::quantise;

std::vector<float> dequantise(const Quantised& q) {
  std::vector<float> out(size_t(q.N * q.K));
  cpu::dequantize_weight(q.view(), out.data());
  return out;
}

// Restores the automatic ISA choice when a test that forced one ends.
struct IsaGuard {
  cpu::QuantIsa saved = cpu::quant_isa();
  ~IsaGuard() { cpu::set_quant_isa(saved); }
};

std::vector<cpu::QuantIsa> available_isas() {
  std::vector<cpu::QuantIsa> v;
  for (auto i : {cpu::QuantIsa::portable, cpu::QuantIsa::avx2, cpu::QuantIsa::avx512})
    if (cpu::quant_isa_supported(i)) v.push_back(i);
  return v;
}

void check_forward(int bits, int64_t M, int64_t N, int64_t K, bool with_bias, uint64_t seed) {
  const auto w = st::randn(size_t(N * K), seed, 0.05f);
  const auto x = st::randn(size_t(M * K), seed + 1);
  const auto bias = st::randn(size_t(N), seed + 2);
  const Quantised q = quantise(bits, w, N, K);
  const auto dq = dequantise(q);
  std::vector<float> out(size_t(M * N), std::numeric_limits<float>::quiet_NaN());
  cpu::quant_linear_forward(out.data(), x.data(), q.view(), with_bias ? bias.data() : nullptr, M);
  double max_err = 0, worst_ratio = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double ref = with_bias ? double(bias[size_t(n)]) : 0.0, mag = std::fabs(ref);
      for (int64_t k = 0; k < K; ++k) {
        const double t = double(x[size_t(m * K + k)]) * double(dq[size_t(n * K + k)]);
        ref += t;
        mag += std::fabs(t);
      }
      const double err = std::fabs(double(out[size_t(m * N + n)]) - ref);
      max_err = std::max(max_err, err);
      worst_ratio = std::max(worst_ratio, err / (1e-5 * mag + 1e-30));
    }
  std::printf("int%d [%s] M=%ld N=%ld K=%ld bias=%d: max abs err %.3g, worst err / tolerance %.3g\n", bits,
              cpu::quant_isa_name(cpu::quant_isa()), long(M), long(N), long(K), int(with_bias), max_err, worst_ratio);
  EXPECT_LE(worst_ratio, 1.0) << "int" << bits << " M=" << M << " N=" << N << " K=" << K;
}

TEST(QuantGemm, QuantisationErrorIsAtMostHalfAScale) {
  for (int bits : {8, 4}) {
    const int64_t N = 37, K = bits == 4 ? 96 : 83;
    auto w = st::randn(size_t(N * K), 7, 0.3f);
    for (int64_t k = 0; k < K; ++k) w[size_t(5 * K + k)] = 0.0f;  // an all-zero row: scale 0, exact
    w[3] = 40.0f;                                                   // an outlier widens only its block
    const Quantised q = quantise(bits, w, N, K);
    const auto dq = dequantise(q);
    const int64_t block = bits == 8 ? K : kQuantGroup;
    const double qmax = bits == 8 ? 127 : 7;
    double worst = 0;
    for (int64_t i = 0; i < N * K; ++i) {
      const int64_t b = i / block;
      double amax = 0;
      for (int64_t j = b * block; j < (b + 1) * block; ++j) amax = std::max(amax, std::fabs(double(w[size_t(j)])));
      const double s = q.scales[size_t(b)];
      ASSERT_NEAR(s, amax / qmax, 1e-6 * amax) << "scale of block " << b;
      const double err = std::fabs(double(w[size_t(i)]) - double(dq[size_t(i)]));
      ASSERT_LE(err, s / 2 * (1 + 1e-5) + 1e-12) << "int" << bits << " element " << i;
      worst = std::max(worst, s > 0 ? err / s : 0.0);
    }
    for (int64_t k = 0; k < K; ++k) EXPECT_EQ(dq[size_t(5 * K + k)], 0.0f);
    std::printf("int%d: worst |w - dq| / scale = %.4f (bound 0.5)\n", bits, worst);
  }
}

TEST(QuantGemm, Int4PackingIsTwoNibblesPerByteInQ40Order) {
  // Row 0: one group with values k - 8 for k < 16 and 7 - (k - 16) above: scale 1 (amax 7 at k = 15, 16).
  std::vector<float> w(32);
  for (int k = 0; k < 16; ++k) w[size_t(k)] = float(k - 8 < -7 ? -7 : k - 8);
  for (int k = 16; k < 32; ++k) w[size_t(k)] = float(7 - (k - 16) < -7 ? -7 : 7 - (k - 16));
  const Quantised q = quantise(4, w, 1, 32);
  ASSERT_EQ(q.q.size(), 16u);
  EXPECT_FLOAT_EQ(q.scales[0], 1.0f);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(int(q.q[size_t(j)] & 15) - 8, int(w[size_t(j)])) << "low nibble of byte " << j << " is k = " << j;
    EXPECT_EQ(int(q.q[size_t(j)] >> 4) - 8, int(w[size_t(16 + j)])) << "high nibble of byte " << j << " is k = " << 16 + j;
  }
}

TEST(QuantGemm, RefusesWhatItCannotQuantise) {
  std::vector<float> w(40 * 3, 0.5f);
  std::vector<uint8_t> q(200);
  std::vector<float> s(10);
  EXPECT_THROW(cpu::quantize_weight(4, w.data(), 3, 40, q.data(), s.data()), InputError);  // K % 32 != 0
  EXPECT_THROW(cpu::quantize_weight(3, w.data(), 3, 40, q.data(), s.data()), InputError);  // bits
  EXPECT_NO_THROW(cpu::quantize_weight(8, w.data(), 3, 40, q.data(), s.data()));          // any K at 8 bits
  w[7] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(cpu::quantize_weight(8, w.data(), 3, 40, q.data(), s.data()), InputError);
  try {
    cpu::check_quant_shape(4, 3, 40);
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("multiple of"), std::string::npos) << e.what();
  }
  const QuantWeight bad{4, 3, 40, q.data(), s.data()};
  std::vector<float> out(3);
  EXPECT_THROW(cpu::quant_linear_forward(out.data(), w.data(), bad, nullptr, 1), Error);
}

TEST(QuantGemm, EveryIsaPathMatchesTheDequantisedProduct) {
  IsaGuard guard;
  for (auto isa : available_isas()) {
    cpu::set_quant_isa(isa);
    for (int64_t M : {1, 2, 3, 4, 5, 7}) {
      check_forward(8, M, 67, 83, M % 2 == 1, 11);   // K tail of 19 (AVX-512: 16 + 3 masked)
      check_forward(8, M, 33, 7, false, 12);         // K shorter than one vector
      check_forward(8, M, 129, 256, true, 13);       // whole vectors
      check_forward(4, M, 67, 96, M % 2 == 0, 14);   // three groups
      check_forward(4, M, 130, 512, true, 15);
    }
  }
  std::printf("ISA paths on this CPU: %zu; automatic choice: %s\n", available_isas().size(),
              cpu::quant_isa_name(guard.saved));
}

TEST(QuantGemm, PrefillPathMatchesTheDequantisedProduct) {
  for (int64_t M : {8, 33}) {
    check_forward(8, M, 65, 83, true, 21);
    check_forward(4, M, 300, 1024, false, 22);  // more than one dequantised tile
  }
}

TEST(QuantGemm, GemvRowsDoNotDependOnTheBatch) {
  // Within the GEMV path, a row's result is bit-identical whether it is computed alone or with others.
  IsaGuard guard;
  for (auto isa : available_isas()) {
    cpu::set_quant_isa(isa);
    for (int bits : {8, 4}) {
      const int64_t N = 50, K = 160, M = 7;
      const Quantised q = quantise(bits, st::randn(size_t(N * K), 31, 0.05f), N, K);
      const auto x = st::randn(size_t(M * K), 32);
      std::vector<float> all(static_cast<size_t>(M * N)), one(static_cast<size_t>(N));
      cpu::quant_linear_forward(all.data(), x.data(), q.view(), nullptr, M);
      for (int64_t m = 0; m < M; ++m) {
        cpu::quant_linear_forward(one.data(), x.data() + m * K, q.view(), nullptr, 1);
        for (int64_t n = 0; n < N; ++n) ASSERT_EQ(one[size_t(n)], all[size_t(m * N + n)]) << "row " << m << " col " << n;
      }
    }
  }
}

TEST(QuantGemm, ForcingAnIsaTheCpuLacksIsRefused) {
  for (auto i : {cpu::QuantIsa::avx2, cpu::QuantIsa::avx512})
    if (!cpu::quant_isa_supported(i)) {
      EXPECT_THROW(cpu::set_quant_isa(i), Error);
    }
  EXPECT_TRUE(cpu::quant_isa_supported(cpu::QuantIsa::portable));
}

}  // namespace
