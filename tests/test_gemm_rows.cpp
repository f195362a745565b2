// The row-invariant linear product (kernels/cpu/gemm_rows.h): against a double-precision product
// at odd shapes (K below, at and off the lane width, N off the 4-column micro-kernel, strided rows),
// and bitwise invariance: a row's outputs are the same computed alone, at any position in a batch of
// any size, and with 1 or 2 threads. Tolerance: 1e-5 relative to sum_k |a_k w_k| (fp32 accumulation
// in another order than the reference).
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/gemm_rows.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;

namespace {

struct Case {
  int64_t M, K, N, lda, ldo;
  bool bias;
};

TEST(GemmRowsInvariant, MatchesDoubleReference) {
  std::printf("  lanes: %s\n", cpu::rows_invariant_isa());
  const Case cases[] = {{1, 1, 1, 1, 1, false},   {1, 7, 3, 7, 3, true},      {3, 16, 5, 16, 5, true},
                        {5, 17, 9, 20, 11, false}, {4, 33, 64, 33, 64, true},  {9, 128, 130, 140, 131, true},
                        {17, 8, 65, 8, 65, false}, {2, 515, 257, 515, 300, true}, {64, 96, 200, 96, 200, true}};
  for (const Case& c : cases) {
    const auto A = st::randn(size_t(c.M * c.lda), 1 + c.M, 1.0f);
    const auto W = st::randn(size_t(c.N * c.K), 2 + c.K, 0.5f);
    const auto b = st::randn(size_t(c.N), 3 + c.N, 1.0f);
    std::vector<float> out(size_t(c.M * c.ldo), -7.0f);
    cpu::linear_rows_invariant(out.data(), c.ldo, A.data(), c.lda, W.data(), c.K, c.bias ? b.data() : nullptr, c.M, c.K,
                               c.N);
    double worst = 0;
    for (int64_t m = 0; m < c.M; ++m) {
      for (int64_t n = 0; n < c.N; ++n) {
        double ref = c.bias ? b[size_t(n)] : 0.0, mag = std::fabs(ref);
        for (int64_t k = 0; k < c.K; ++k) {
          const double p = double(A[size_t(m * c.lda + k)]) * W[size_t(n * c.K + k)];
          ref += p;
          mag += std::fabs(p);
        }
        const double err = std::fabs(out[size_t(m * c.ldo + n)] - ref) / (mag + 1e-30);
        worst = std::max(worst, err);
        ASSERT_LE(err, 1e-5) << "M=" << c.M << " K=" << c.K << " N=" << c.N << " at (" << m << ", " << n << ")";
      }
      for (int64_t n = c.N; n < c.ldo; ++n) ASSERT_EQ(out[size_t(m * c.ldo + n)], -7.0f) << "wrote past N";
    }
    std::printf("  M=%lld K=%lld N=%lld: max error %.2e of sum |a w|\n", (long long)c.M, (long long)c.K,
                (long long)c.N, worst);
  }
}

TEST(GemmRowsInvariant, ARowsResultDoesNotDependOnTheBatchOrThreads) {
  const int64_t K = 300, N = 197, M = 23;
  const auto A = st::randn(size_t(M * K), 11, 1.0f);
  const auto W = st::randn(size_t(N * K), 12, 0.3f);
  const auto b = st::randn(size_t(N), 13, 1.0f);
  std::vector<float> batch(size_t(M * N));
  cpu::linear_rows_invariant(batch.data(), N, A.data(), K, W.data(), K, b.data(), M, K, N);
  const int threads = omp_get_max_threads();
  for (int t : {1, 2}) {
    omp_set_num_threads(t);
    for (int64_t m = 0; m < M; ++m) {
      std::vector<float> alone(static_cast<size_t>(N));
      cpu::linear_rows_invariant(alone.data(), N, A.data() + m * K, K, W.data(), K, b.data(), 1, K, N);
      ASSERT_EQ(0, std::memcmp(alone.data(), batch.data() + m * N, sizeof(float) * size_t(N)))
          << "row " << m << " alone differs from its place in a batch of " << M << " (" << t << " threads)";
    }
    // Sub-batches starting at every offset and of every length up to 9: rows land in every slot of
    // the 4-row micro-kernel and in remainders of every size.
    for (int64_t m0 = 0; m0 < 5; ++m0)
      for (int64_t len = 1; len <= 9 && m0 + len <= M; ++len) {
        std::vector<float> part(size_t(len * N));
        cpu::linear_rows_invariant(part.data(), N, A.data() + m0 * K, K, W.data(), K, b.data(), len, K, N);
        ASSERT_EQ(0, std::memcmp(part.data(), batch.data() + m0 * N, sizeof(float) * size_t(len * N)))
            << "rows " << m0 << ".." << m0 + len - 1 << " (" << t << " threads)";
      }
  }
  omp_set_num_threads(threads);
}

TEST(GemmRowsInvariant, RefusesBadShapes) {
  float x = 0;
  EXPECT_THROW(cpu::linear_rows_invariant(&x, 1, &x, 0, &x, 1, nullptr, 1, 1, 1), Error);  // lda < K
  EXPECT_THROW(cpu::linear_rows_invariant(&x, 1, &x, 1, &x, 1, nullptr, -1, 1, 1), Error);
  cpu::linear_rows_invariant(&x, 1, &x, 1, &x, 1, nullptr, 0, 1, 1);  // nothing to do
}

}  // namespace
