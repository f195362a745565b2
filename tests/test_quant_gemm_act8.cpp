// Quantised linear layers with int8 activations (kernels/cpu/quant_gemm.h, "int8 activations"):
// - the activation quantiser: per-32 scales, |x - s q| <= s / 2, zeros past K;
// - quant_linear_forward_act8 against a double-precision sum over the same integer codes (the
//   kernel's only rounding is fp32 accumulation: 1e-5 relative), and against the product with fp32
//   activations within the bound that activation rounding allows;
// - every ISA path this CPU has gives the same bits as the portable one, and a row's bits do not
//   depend on the batch or the thread count.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <cstring>
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

// The weight's integer code and scale at (n, k), read from the bytes as kernels/quant_weight.h says.
int code_at(const Quantised& w, int64_t n, int64_t k) {
  if (w.bits == 8) return int(int8_t(w.q[size_t(n * w.K + k)]));
  const int64_t g = k / 32, j = k % 32;
  const uint8_t b = w.q[size_t(n * (w.K / 2) + g * 16 + (j & 15))];
  return int(j < 16 ? (b & 15) : (b >> 4)) - 8;
}
double scale_at(const Quantised& w, int64_t n, int64_t k) {
  return w.bits == 8 ? w.scales[size_t(n)] : w.scales[size_t(n * (w.K / 32) + k / 32)];
}

struct IsaGuard {
  cpu::Act8Isa saved = cpu::act8_isa();
  ~IsaGuard() { cpu::set_act8_isa(saved); }
};

std::vector<cpu::Act8Isa> available_isas() {
  std::vector<cpu::Act8Isa> v;
  for (auto i : {cpu::Act8Isa::portable, cpu::Act8Isa::avx2, cpu::Act8Isa::avx512_vnni})
    if (cpu::act8_isa_supported(i)) v.push_back(i);
  return v;
}

std::vector<float> forward(const Quantised& q, const std::vector<float>& x, const float* bias, int64_t M) {
  std::vector<float> out(size_t(M * q.N), std::numeric_limits<float>::quiet_NaN());
  cpu::quant_linear_forward_act8(out.data(), x.data(), q.view(), bias, M);
  return out;
}

TEST(QuantGemmAct8, ActivationQuantiserRoundsWithinHalfAScale) {
  for (int64_t K : {1, 31, 32, 33, 100}) {
    auto x = st::randn(size_t(K), 5 + uint64_t(K));
    if (K > 40) std::fill(x.begin() + 32, x.begin() + 64, 0.0f);  // an all-zero block: scale 0, codes 0
    const int64_t blocks = (K + 31) / 32;
    std::vector<int8_t> q(static_cast<size_t>(blocks * 32), 99);
    std::vector<float> s(static_cast<size_t>(blocks));
    cpu::quantize_activations(x.data(), K, q.data(), s.data());
    for (int64_t b = 0; b < blocks; ++b) {
      float amax = 0;
      for (int64_t k = b * 32; k < std::min(K, b * 32 + 32); ++k) amax = std::max(amax, std::fabs(x[size_t(k)]));
      EXPECT_EQ(s[size_t(b)], amax / 127.0f) << "block " << b;
    }
    for (int64_t k = 0; k < blocks * 32; ++k) {
      if (k >= K) {
        EXPECT_EQ(q[size_t(k)], 0) << "past K at " << k;
        continue;
      }
      const double sb = s[size_t(k / 32)];
      EXPECT_GE(q[size_t(k)], -127);
      EXPECT_LE(std::fabs(double(x[size_t(k)]) - sb * q[size_t(k)]), sb / 2 * (1 + 1e-6) + 1e-30) << "k " << k;
    }
  }
}

// Checks one shape on the ISA in use: against the integer codes in double, and against fp32 activations.
void check_forward(int bits, int64_t M, int64_t N, int64_t K, bool with_bias, uint64_t seed) {
  const auto w = st::randn(size_t(N * K), seed, 0.05f);
  const auto x = st::randn(size_t(M * K), seed + 1);
  const auto bias = st::randn(size_t(N), seed + 2);
  const Quantised q = quantise(bits, w, N, K);
  const auto out = forward(q, x, with_bias ? bias.data() : nullptr, M);
  const int64_t blocks = (K + 31) / 32;
  std::vector<int8_t> xq(static_cast<size_t>(blocks * 32));
  std::vector<float> xs(static_cast<size_t>(blocks));
  double worst_codes = 0, worst_bound = 0;
  for (int64_t m = 0; m < M; ++m) {
    cpu::quantize_activations(x.data() + m * K, K, xq.data(), xs.data());
    for (int64_t n = 0; n < N; ++n) {
      const double b = with_bias ? double(bias[size_t(n)]) : 0.0;
      double ref = b, mag = std::fabs(b), exact = b, bound = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double wk = scale_at(q, n, k) * code_at(q, n, k), sx = xs[size_t(k / 32)];
        const double t = sx * xq[size_t(k)] * wk;
        ref += t;
        mag += std::fabs(t);
        exact += double(x[size_t(m * K + k)]) * wk;
        bound += std::fabs(wk) * sx / 2;  // |x - sx xq| <= sx / 2
      }
      const double got = out[size_t(m * N + n)];
      worst_codes = std::max(worst_codes, std::fabs(got - ref) / (1e-5 * mag + 1e-30));
      worst_bound = std::max(worst_bound, std::fabs(got - exact) / (bound * (1 + 1e-4) + 1e-5 * mag + 1e-30));
    }
  }
  std::printf("int%d [%s] M=%ld N=%ld K=%ld: err / tolerance %.3g vs the codes, %.3g of the activation-rounding bound\n",
              bits, cpu::act8_isa_name(cpu::act8_isa()), long(M), long(N), long(K), worst_codes, worst_bound);
  EXPECT_LE(worst_codes, 1.0) << "int" << bits << " M=" << M << " N=" << N << " K=" << K;
  EXPECT_LE(worst_bound, 1.0) << "int" << bits << " M=" << M << " N=" << N << " K=" << K;
}

TEST(QuantGemmAct8, EveryIsaPathMatchesADoublePrecisionReference) {
  IsaGuard guard;
  for (auto isa : available_isas()) {
    cpu::set_act8_isa(isa);
    for (int64_t M : {1, 2, 4, 5, 9}) {
      check_forward(8, M, 37, 83, M % 2 == 1, 11);  // 3 blocks: the last pair half empty, a partial block
      check_forward(8, M, 19, 7, false, 12);        // shorter than a block
      check_forward(8, M, 40, 128, true, 13);       // whole pairs
      check_forward(8, M, 21, 100, true, 14);       // 4 blocks, the last partial
      check_forward(4, M, 37, 96, M % 2 == 0, 15);  // 3 groups: an odd last block
      check_forward(4, M, 50, 512, true, 16);
    }
  }
  std::printf("act8 ISA paths on this CPU: %zu; automatic choice: %s\n", available_isas().size(),
              cpu::act8_isa_name(guard.saved));
}

TEST(QuantGemmAct8, EveryIsaPathGivesTheSameBits) {
  IsaGuard guard;
  const auto isas = available_isas();
  if (isas.size() < 2) GTEST_SKIP() << "only the portable path on this CPU";
  struct Shape {
    int bits;
    int64_t M, N, K;
  };
  for (const Shape& s : {Shape{8, 7, 33, 83}, Shape{8, 3, 17, 200}, Shape{8, 5, 16, 64}, Shape{4, 6, 29, 96},
                         Shape{4, 9, 40, 256}, Shape{8, 1, 300, 1000}}) {
    const Quantised q = quantise(s.bits, st::randn(size_t(s.N * s.K), 41, 0.05f), s.N, s.K);
    const auto x = st::randn(size_t(s.M * s.K), 42);
    const auto bias = st::randn(size_t(s.N), 43);
    cpu::set_act8_isa(cpu::Act8Isa::portable);
    const auto want = forward(q, x, bias.data(), s.M);
    for (auto isa : isas) {
      cpu::set_act8_isa(isa);
      const auto got = forward(q, x, bias.data(), s.M);
      ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
          << cpu::act8_isa_name(isa) << " differs from portable, int" << s.bits << " M=" << s.M << " K=" << s.K;
    }
  }
}

TEST(QuantGemmAct8, RowsDoNotDependOnTheBatchOrThreads) {
  IsaGuard guard;
  for (auto isa : available_isas()) {
    cpu::set_act8_isa(isa);
    for (int bits : {8, 4}) {
      // N * K large enough that the product runs threaded.
      const int64_t N = 512, K = 544, M = 11;
      const Quantised q = quantise(bits, st::randn(size_t(N * K), 51, 0.05f), N, K);
      const auto x = st::randn(size_t(M * K), 52);
      const auto all = forward(q, x, nullptr, M);
      const int saved_threads = omp_get_max_threads();
      for (int threads : {1, 2}) {
        omp_set_num_threads(threads);
        for (int64_t m = 0; m < M; ++m) {
          const std::vector<float> row(x.begin() + m * K, x.begin() + (m + 1) * K);
          const auto one = forward(q, row, nullptr, 1);
          ASSERT_EQ(0, std::memcmp(one.data(), all.data() + m * N, size_t(N) * sizeof(float)))
              << cpu::act8_isa_name(isa) << " int" << bits << " row " << m << " threads " << threads;
        }
      }
      omp_set_num_threads(saved_threads);
    }
  }
}

TEST(QuantGemmAct8, ForcingAnIsaTheCpuLacksIsRefused) {
  for (auto i : {cpu::Act8Isa::avx2, cpu::Act8Isa::avx512_vnni})
    if (!cpu::act8_isa_supported(i)) {
      EXPECT_THROW(cpu::set_act8_isa(i), Error);
    }
  EXPECT_TRUE(cpu::act8_isa_supported(cpu::Act8Isa::portable));
}

}  // namespace
