// CUDA gemm family (cuBLASLt) vs its CPU twin and a double-precision reference: every transpose
// combination at odd sizes, padded row strides, alpha/beta, K == 0 (C = beta * C, NaN in C dropped
// when beta == 0), views misaligned by one float, bf16 operands with fp32 accumulation, TF32 opt-in,
// linear forward (fused bias) and backward (accumulating dinp, dweight, deterministic dbias).
// Skips visibly without a device. fp32 tolerance: 1e-5 abs + 1e-4 rel (sums over K in another
// order than oneDNN's), plus 2e-7 abs per summed term for the linear layer's long reductions (dweight
// sums N products of O(1) values, and cancellation leaves the fp32 rounding of the terms); TF32:
// 2e-2 of sqrt(K).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "cuda_testing.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cuda/gemm.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;
using st::DeviceVec;

namespace {

// Row-major double reference of C = alpha op(A) op(B) + beta C.
std::vector<double> ref_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const std::vector<float>& A,
                             int64_t lda, const std::vector<float>& B, int64_t ldb, double beta,
                             const std::vector<float>& C, int64_t ldc) {
  std::vector<double> out(C.begin(), C.end());
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += double(ta ? A[k * lda + i] : A[i * lda + k]) * double(tb ? B[j * ldb + k] : B[k * ldb + j]);
      const double c = beta == 0 ? 0.0 : beta * double(C[i * ldc + j]);
      out[static_cast<size_t>(i * ldc + j)] = alpha * s + c;
    }
  return out;
}

struct GemmCase {
  bool ta, tb;
  int64_t M, N, K, pad;  // pad: extra elements per row (ld = cols + pad)
  float alpha, beta;
};

void check_gemm(const GemmCase& c, uint64_t seed, int64_t misalign) {
  std::printf("cuda gemm ta=%d tb=%d M=%ld N=%ld K=%ld pad=%ld alpha=%g beta=%g misalign=%ld\n", c.ta, c.tb, long(c.M),
              long(c.N), long(c.K), long(c.pad), c.alpha, c.beta, long(misalign));
  const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
  const int64_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
  const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.N + c.pad;
  const auto A = st::randn(static_cast<size_t>(a_rows * lda + misalign), seed);
  const auto B = st::randn(static_cast<size_t>(b_rows * ldb + misalign), seed + 1);
  const auto C0 = st::randn(static_cast<size_t>(c.M * ldc + misalign), seed + 2);
  std::vector<float> A_(A.begin() + misalign, A.end()), B_(B.begin() + misalign, B.end()),
      C_(C0.begin() + misalign, C0.end());
  const auto want = ref_gemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A_, lda, B_, ldb, c.beta, C_, ldc);
  std::vector<float> cpu = C_;
  cpu::gemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A_.data(), lda, B_.data(), ldb, c.beta, cpu.data(), ldc);

  DeviceVec<float> dA(A), dB(B), dC(C0);
  cuda::gemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, dA.p + misalign, lda, dB.p + misalign, ldb, c.beta, dC.p + misalign,
             ldc);
  auto got_all = dC.host();
  std::vector<float> got(got_all.begin() + misalign, got_all.end());
  st::expect_close(got, want, 1e-5, 1e-4, "C vs double");
  st::expect_close(got, cpu, 1e-5, 1e-4, "C vs cpu twin");
}

TEST(CudaGemm, TransposesStridesAlphaBeta) {
  STRATA_SKIP_WITHOUT_CUDA();
  uint64_t seed = 100;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      check_gemm({ta, tb, 37, 53, 29, 0, 1.0f, 0.0f}, seed++, 0);
      check_gemm({ta, tb, 64, 128, 256, 3, 0.5f, 1.0f}, seed++, 0);
      check_gemm({ta, tb, 1, 300, 17, 1, 1.0f, -2.0f}, seed++, 1);  // 4-byte aligned views
      check_gemm({ta, tb, 129, 1, 65, 0, 2.0f, 0.5f}, seed++, 1);
    }
}

TEST(CudaGemm, KZeroScalesC) {
  STRATA_SKIP_WITHOUT_CUDA();
  const int64_t M = 5, N = 7;
  std::vector<float> C(static_cast<size_t>(M * N), std::numeric_limits<float>::quiet_NaN());
  DeviceVec<float> dC(C), dA(static_cast<size_t>(1)), dB(static_cast<size_t>(1));
  cuda::gemm(false, false, M, N, 0, 1.0f, dA.p, 1, dB.p, N, 0.0f, dC.p, N);
  for (float v : dC.host()) EXPECT_EQ(v, 0.0f);  // beta == 0: NaN in C is not propagated
  auto C2 = st::randn(static_cast<size_t>(M * N), 7);
  DeviceVec<float> dC2(C2);
  cuda::gemm(true, true, M, N, 0, 1.0f, dA.p, M, dB.p, 1, 3.0f, dC2.p, N);
  auto got = dC2.host();
  for (size_t i = 0; i < got.size(); ++i) EXPECT_FLOAT_EQ(got[i], 3.0f * C2[i]);
}

TEST(CudaGemm, RejectsShortRowStride) {
  STRATA_SKIP_WITHOUT_CUDA();
  DeviceVec<float> d(static_cast<size_t>(64));
  EXPECT_THROW(cuda::gemm(false, false, 4, 4, 4, 1.0f, d.p, 3, d.p, 4, 0.0f, d.p, 4), Error);
}

TEST(CudaGemm, Bf16OperandsFp32Accumulate) {
  STRATA_SKIP_WITHOUT_CUDA();
  uint64_t seed = 300;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const int64_t M = 96, N = 80, K = 136;  // multiples of 8: bf16 tensor-core alignment
      const int64_t a_n = M * K, b_n = K * N;
      std::vector<uint16_t> A(static_cast<size_t>(a_n)), B(static_cast<size_t>(b_n));
      auto fa = st::randn(static_cast<size_t>(a_n), seed++), fb = st::randn(static_cast<size_t>(b_n), seed++);
      for (size_t i = 0; i < A.size(); ++i) A[i] = f32_to_bf16(fa[i]);
      for (size_t i = 0; i < B.size(); ++i) B[i] = f32_to_bf16(fb[i]);
      const int64_t lda = ta ? M : K, ldb = tb ? K : N;
      auto C = st::randn(static_cast<size_t>(M * N), seed++);
      std::vector<float> cpu = C;
      cpu::gemm_bf16(ta, tb, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, 1.0f, cpu.data(), N);
      DeviceVec<uint16_t> dA(A), dB(B);
      DeviceVec<float> dC(C);
      cuda::gemm_bf16(ta, tb, M, N, K, 1.0f, dA.p, lda, dB.p, ldb, 1.0f, dC.p, N);
      std::printf("cuda gemm_bf16 ta=%d tb=%d\n", ta, tb);
      // bf16 products are exact in fp32; only the summation order differs.
      st::expect_close(dC.host(), cpu, 1e-4, 1e-4, "C bf16 vs cpu twin");
    }
}

TEST(CudaGemm, Tf32IsOptIn) {
  STRATA_SKIP_WITHOUT_CUDA();
  EXPECT_FALSE(cuda::allow_tf32());
  const int64_t M = 64, N = 64, K = 512;
  auto A = st::randn(static_cast<size_t>(M * K), 1), B = st::randn(static_cast<size_t>(K * N), 2);
  std::vector<float> C(static_cast<size_t>(M * N), 0.0f);
  const auto want = ref_gemm(false, false, M, N, K, 1.0, A, K, B, N, 0.0, C, N);
  DeviceVec<float> dA(A), dB(B), dC(C);
  cuda::set_allow_tf32(true);
  cuda::gemm(false, false, M, N, K, 1.0f, dA.p, K, dB.p, N, 0.0f, dC.p, N);
  cuda::set_allow_tf32(false);
  // TF32 keeps 10 mantissa bits: errors ~1e-3 relative per product, well inside 2e-2 of the row norm.
  const auto got = dC.host();
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(double(got[i]) - want[i]) / std::sqrt(double(K)));
  std::printf("cuda gemm tf32: max |err| / sqrt(K) = %.3e\n", worst);
  EXPECT_LT(worst, 2e-2);
}

TEST(CudaLinear, ForwardBackwardMatchCpu) {
  STRATA_SKIP_WITHOUT_CUDA();
  struct S {
    int64_t N, IC, OC;
  };
  uint64_t seed = 500;
  for (S s : {S{1, 16, 24}, S{37, 53, 29}, S{256, 128, 384}, S{300, 7, 1}}) {
    for (bool with_bias : {false, true}) {
      std::printf("cuda linear N=%ld IC=%ld OC=%ld bias=%d\n", long(s.N), long(s.IC), long(s.OC), with_bias);
      const auto inp = st::randn(static_cast<size_t>(s.N * s.IC), seed++), w = st::randn(static_cast<size_t>(s.OC * s.IC), seed++, 0.2f);
      const auto bias = st::randn(static_cast<size_t>(s.OC), seed++);
      std::vector<float> out(static_cast<size_t>(s.N * s.OC));
      cpu::linear_forward(out.data(), inp.data(), w.data(), with_bias ? bias.data() : nullptr, s.N, s.IC, s.OC);
      DeviceVec<float> dinp(inp), dw(w), db(bias), dout(out.size());
      cuda::linear_forward(dout.p, dinp.p, dw.p, with_bias ? db.p : nullptr, s.N, s.IC, s.OC);
      auto tol = [](int64_t terms) { return 1e-5 + 2e-7 * double(terms); };
      st::expect_close(dout.host(), out, tol(s.IC), 1e-4, "out");

      // Backward: grads start non-zero (they accumulate), dinp checked assigned and accumulated.
      const auto dy = st::randn(static_cast<size_t>(s.N * s.OC), seed++);
      for (bool acc : {false, true}) {
        auto gin = st::randn(static_cast<size_t>(s.N * s.IC), seed++), gw = st::randn(w.size(), seed++), gb = st::randn(bias.size(), seed++);
        auto cgin = gin, cgw = gw, cgb = gb;
        cpu::linear_backward(cgin.data(), cgw.data(), with_bias ? cgb.data() : nullptr, dy.data(), inp.data(), w.data(),
                             s.N, s.IC, s.OC, acc);
        DeviceVec<float> ddy(dy), dgin(gin), dgw(gw), dgb(gb);
        cuda::linear_backward(dgin.p, dgw.p, with_bias ? dgb.p : nullptr, ddy.p, dinp.p, dw.p, s.N, s.IC, s.OC, acc);
        st::expect_close(dgin.host(), cgin, tol(s.OC), 1e-4, acc ? "dinp (accumulated)" : "dinp");
        st::expect_close(dgw.host(), cgw, tol(s.N), 1e-4, "dweight");
        st::expect_close(dgb.host(), cgb, tol(s.N), 1e-4, "dbias");
        if (with_bias) {  // the bias gradient is a fixed-order reduction: bitwise reproducible
          DeviceVec<float> again(gb);
          cuda::linear_backward(nullptr, nullptr, again.p, ddy.p, dinp.p, dw.p, s.N, s.IC, s.OC, false);
          const auto a = again.host(), b = dgb.host();
          EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
        }
      }
    }
  }
}

}  // namespace
