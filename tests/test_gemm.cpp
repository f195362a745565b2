// GEMM: every transpose combination, odd sizes, leading dimensions larger than the rows, alpha and
// beta, degenerate sizes; linear_forward against a double reference and linear_backward against
// finite differences of loss = sum(w_loss * out), including its accumulate / skip options.
#include <vector>

#include "core/dtype.h"
#include "kernels/cpu/gemm.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;
using st::expect_close;

namespace {

// C[M, N] = alpha * op(A) op(B) + beta * C in double; row-major with row strides lda/ldb/ldc.
void ref_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const std::vector<double>& A,
              int64_t lda, const std::vector<double>& B, int64_t ldb, double beta, std::vector<double>& C,
              int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += (ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
      C[i * ldc + j] = alpha * s + beta * C[i * ldc + j];
    }
}

void check_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t pad, float alpha, float beta,
                uint64_t seed) {
  // Stored shapes: op(A) = A is [M, K], A^T stored as [K, M]; likewise B. `pad` extra columns per
  // row hold sentinels that must be neither read into the result nor written.
  const int64_t arows = ta ? K : M, acols = ta ? M : K, brows = tb ? N : K, bcols = tb ? K : N;
  const int64_t lda = acols + pad, ldb = bcols + pad, ldc = N + pad;
  auto A = st::randn(arows * lda, seed), B = st::randn(brows * ldb, seed + 1), C = st::randn(M * ldc, seed + 2);
  for (int64_t r = 0; r < arows; ++r)
    for (int64_t c = acols; c < lda; ++c) A[r * lda + c] = 1e30f;
  for (int64_t r = 0; r < brows; ++r)
    for (int64_t c = bcols; c < ldb; ++c) B[r * ldb + c] = 1e30f;
  for (int64_t r = 0; r < M; ++r)
    for (int64_t c = N; c < ldc; ++c) C[r * ldc + c] = 12345.0f;
  auto Cd = st::to_double(C);
  ref_gemm(ta, tb, M, N, K, alpha, st::to_double(A), lda, st::to_double(B), ldb, beta, Cd, ldc);
  cpu::gemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
  char what[96];
  std::snprintf(what, sizeof what, "gemm %c%c M=%ld N=%ld K=%ld ld+%ld", ta ? 'T' : 'N', tb ? 'T' : 'N', long(M),
                long(N), long(K), long(pad));
  // Dot products of K unit normals: float error grows like sqrt(K) * eps * |terms|.
  expect_close(C, Cd, 2e-6 * (K + 1), 1e-5, what);
}

}  // namespace

TEST(Gemm, AllTransposesOddSizesAndStrides) {
  struct Shape {
    int64_t M, N, K;
  };
  const Shape shapes[] = {{1, 1, 1}, {7, 13, 5}, {33, 65, 17}, {129, 3, 257}, {64, 48, 96}};
  uint64_t seed = 1;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (const auto& s : shapes)
        for (int64_t pad : {0, 3}) {
          check_gemm(ta, tb, s.M, s.N, s.K, pad, 1.0f, 0.0f, seed++);
          check_gemm(ta, tb, s.M, s.N, s.K, pad, -0.5f, 0.75f, seed++);
        }
}

TEST(Gemm, ModelSizedShapes) {
  // The shapes of a small model's projections (tokens x d_model x 4 d_model), odd token count.
  check_gemm(false, true, 515, 256, 128, 0, 1.0f, 0.0f, 100);
  check_gemm(false, false, 515, 128, 256, 0, 1.0f, 1.0f, 101);
  check_gemm(true, false, 256, 128, 515, 0, 1.0f, 1.0f, 102);
}

TEST(Gemm, EmptyOutputWritesNothing) {
  std::vector<float> A(4, 1.0f), B(4, 1.0f), D = {7.0f};
  cpu::gemm(false, false, 0, 1, 4, 1.0f, A.data(), 4, B.data(), 1, 0.0f, D.data(), 1);
  cpu::gemm(false, false, 1, 0, 4, 1.0f, A.data(), 4, B.data(), 1, 0.0f, D.data(), 1);
  EXPECT_EQ(D[0], 7.0f);
}

// BLAS semantics for K = 0: the product is empty, so C = beta * C (dnnl_sgemm alone leaves C unscaled).
TEST(Gemm, KZeroScalesC) {
  std::vector<float> A(1), B(1), C = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
  cpu::gemm(false, false, 2, 3, 0, 1.0f, A.data(), 1, B.data(), 3, 0.5f, C.data(), 3);
  expect_close(C, std::vector<double>{0.5, 1.0, 1.5, 2.0, 2.5, 3.0}, 0, 0, "K=0 -> beta*C");
  std::vector<float> Z = {1.0f, 2.0f};
  cpu::gemm(true, true, 1, 2, 0, 1.0f, A.data(), 1, B.data(), 1, 0.0f, Z.data(), 2);
  expect_close(Z, std::vector<double>{0.0, 0.0}, 0, 0, "K=0 beta=0 -> zeros");
}

namespace {

// inp[N, IC], weight[OC, IC], bias[OC] (empty: none) -> out[N, OC], in double.
std::vector<double> ref_linear(const std::vector<double>& inp, const std::vector<double>& w,
                               const std::vector<double>& b, int64_t N, int64_t IC, int64_t OC) {
  std::vector<double> out(N * OC);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < OC; ++o) {
      double s = b.empty() ? 0.0 : b[o];
      for (int64_t i = 0; i < IC; ++i) s += inp[n * IC + i] * w[o * IC + i];
      out[n * OC + o] = s;
    }
  return out;
}

void check_linear(int64_t N, int64_t IC, int64_t OC, bool bias, bool accumulate_dinp, uint64_t seed) {
  std::printf("linear N=%ld IC=%ld OC=%ld bias=%d accumulate_dinp=%d\n", long(N), long(IC), long(OC), int(bias),
              int(accumulate_dinp));
  auto inp = st::randn(N * IC, seed), w = st::randn(OC * IC, seed + 1, 0.5f);
  auto b = bias ? st::randn(OC, seed + 2) : std::vector<float>{};
  std::vector<float> out(N * OC, 1e30f);
  cpu::linear_forward(out.data(), inp.data(), w.data(), bias ? b.data() : nullptr, N, IC, OC);
  auto ind = st::to_double(inp), wd = st::to_double(w), bd = st::to_double(b);
  expect_close(out, ref_linear(ind, wd, bd, N, IC, OC), 1e-6 * (IC + 1), 1e-5, "out");

  auto wl = st::randn(N * OC, seed + 3);
  // dinp is assigned (garbage before) unless accumulate_dinp; dweight, dbias accumulate.
  auto dinp0 = accumulate_dinp ? st::randn(N * IC, seed + 4) : std::vector<float>(N * IC, 1e30f);
  auto dw0 = st::randn(OC * IC, seed + 5), db0 = st::randn(OC, seed + 6);
  auto dinp = dinp0, dw = dw0, db = db0;
  cpu::linear_backward(dinp.data(), dw.data(), bias ? db.data() : nullptr, wl.data(), inp.data(), w.data(), N, IC, OC,
                       accumulate_dinp);
  auto wld = st::to_double(wl);
  auto loss = [&] {
    auto o = ref_linear(ind, wd, bd, N, IC, OC);
    double s = 0;
    for (size_t i = 0; i < o.size(); ++i) s += o[i] * wld[i];
    return s;
  };
  auto minus = [](const std::vector<float>& a, const std::vector<float>& a0, bool sub) {
    std::vector<double> r(a.size());
    for (size_t i = 0; i < a.size(); ++i) r[i] = double(a[i]) - (sub ? double(a0[i]) : 0.0);
    return r;
  };
  const double tol_in = 2e-6 * (OC + 1), tol_w = 2e-6 * (N + 1);
  expect_close(minus(dinp, dinp0, accumulate_dinp), st::finite_diff(ind, loss, 1e-4), tol_in, 1e-5, "dinp vs FD");
  expect_close(minus(dw, dw0, true), st::finite_diff(wd, loss, 1e-4), tol_w, 1e-5, "dweight (accumulated) vs FD");
  if (bias) expect_close(minus(db, db0, true), st::finite_diff(bd, loss, 1e-4), tol_w, 1e-5, "dbias (accumulated) vs FD");
  else EXPECT_EQ(db, db0) << "dbias untouched without bias";
}

}  // namespace

TEST(Linear, ForwardBackwardAgainstFiniteDifferences) {
  check_linear(1, 1, 1, true, false, 10);
  check_linear(5, 7, 3, true, false, 11);
  check_linear(6, 9, 13, false, false, 12);
  check_linear(7, 5, 11, true, true, 13);  // dinp accumulated (residual-stream style)
  check_linear(2, 3, 2, false, true, 14);
}

// Decode-sized batches (a few rows) against the double reference, at sizes that engage the threads.
TEST(Linear, DecodeSizedBatches) {
  uint64_t seed = 40;
  for (int64_t N : {1, 2, 3, 4, 5})
    for (auto [IC, OC] : {std::pair<int64_t, int64_t>{1, 1}, {17, 6}, {512, 1031}, {1000, 67}}) {
      auto inp = st::randn(N * IC, seed++), w = st::randn(OC * IC, seed++, 0.5f), b = st::randn(OC, seed++);
      std::vector<float> out(N * OC, 1e30f);
      cpu::linear_forward(out.data(), inp.data(), w.data(), b.data(), N, IC, OC);
      expect_close(out, ref_linear(st::to_double(inp), st::to_double(w), st::to_double(b), N, IC, OC),
                   1e-6 * (IC + 1), 1e-5, "linear N=" + std::to_string(N) + " IC=" + std::to_string(IC));
    }
}

TEST(Linear, NullGradientsAreSkipped) {
  const int64_t N = 4, IC = 3, OC = 5;
  auto inp = st::randn(N * IC, 20), w = st::randn(OC * IC, 21), dout = st::randn(N * OC, 22);
  auto dw0 = st::randn(OC * IC, 23);
  auto dw = dw0;
  // dinp null: only the weight gradient; must equal what a full call produces.
  cpu::linear_backward(nullptr, dw.data(), nullptr, dout.data(), inp.data(), w.data(), N, IC, OC);
  std::vector<float> dinp(N * IC), dw_full = dw0, db(OC, 0.0f);
  cpu::linear_backward(dinp.data(), dw_full.data(), db.data(), dout.data(), inp.data(), w.data(), N, IC, OC);
  EXPECT_EQ(dw, dw_full);
  // dweight null: only dinp.
  std::vector<float> dinp2(N * IC, 1e30f);
  cpu::linear_backward(dinp2.data(), nullptr, nullptr, dout.data(), inp.data(), w.data(), N, IC, OC);
  EXPECT_EQ(dinp2, dinp);
}

// bf16 operands (the reference for the CUDA twin's mixed-precision path): the widened values'
// product in double, with padded row strides and every transpose.
TEST(Gemm, Bf16OperandsMatchWidenedDouble) {
  const int64_t M = 13, N = 9, K = 21, pad = 3;
  uint64_t seed = 900;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K, b_rows = tb ? N : K, b_cols = tb ? K : N;
      const int64_t lda = a_cols + pad, ldb = b_cols + pad;
      std::vector<uint16_t> A(static_cast<size_t>(a_rows * lda)), B(static_cast<size_t>(b_rows * ldb));
      const auto fa = st::randn(A.size(), seed++), fb = st::randn(B.size(), seed++);
      for (size_t i = 0; i < A.size(); ++i) A[i] = f32_to_bf16(fa[i]);
      for (size_t i = 0; i < B.size(); ++i) B[i] = f32_to_bf16(fb[i]);
      const auto C0 = st::randn(static_cast<size_t>(M * N), seed++);
      std::vector<double> want(C0.size());
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          double sum = 0;
          for (int64_t k = 0; k < K; ++k)
            sum += double(bf16_to_f32(ta ? A[k * lda + i] : A[i * lda + k])) *
                   double(bf16_to_f32(tb ? B[j * ldb + k] : B[k * ldb + j]));
          want[size_t(i * N + j)] = 0.5 * sum + 2.0 * double(C0[size_t(i * N + j)]);
        }
      std::vector<float> C = C0;
      cpu::gemm_bf16(ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 2.0f, C.data(), N);
      expect_close(C, want, 1e-5, 1e-5, "gemm_bf16");
    }
}
