// RMSNorm: forward against a double reference, backward against central finite differences of that
// reference (loss = sum(w_loss * y)), on small and odd shapes and on the multi-threaded path.
#include <omp.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/norm.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;
using st::expect_close;

namespace {

// x[N, D], w[D] -> y[N, D], rstd[N], all in double.
void ref_rmsnorm(std::vector<double>& y, std::vector<double>& rstd, const std::vector<double>& x,
                 const std::vector<double>& w, int64_t N, int64_t D, double eps) {
  y.assign(N * D, 0.0);
  rstd.assign(N, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    double ss = 0;
    for (int64_t d = 0; d < D; ++d) ss += x[n * D + d] * x[n * D + d];
    rstd[n] = 1.0 / std::sqrt(ss / double(D) + eps);
    for (int64_t d = 0; d < D; ++d) y[n * D + d] = x[n * D + d] * rstd[n] * w[d];
  }
}

double weighted_sum(const std::vector<double>& a, const std::vector<double>& w) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * w[i];
  return s;
}

// Central difference of f at the listed indices of x (all when `idx` is empty).
std::vector<double> fd_at(std::vector<double>& x, const std::vector<size_t>& idx, const std::function<double()>& f,
                          double h = 1e-6) {
  std::vector<double> g;
  for (size_t i : idx) {
    double keep = x[i];
    x[i] = keep + h;
    double fp = f();
    x[i] = keep - h;
    double fm = f();
    x[i] = keep;
    g.push_back((fp - fm) / (2 * h));
  }
  return g;
}

struct Case {
  int64_t N, D;
  float x_scale, eps;
};

// Full check of one shape: forward values, then dx at `nx` sampled positions (all if nx <= 0) and
// all of dw against finite differences. dx is pre-filled with garbage (must be assigned) and dw
// with random values (must be accumulated into).
void check_case(const Case& c, int nx, uint64_t seed) {
  const int64_t N = c.N, D = c.D;
  std::printf("rmsnorm N=%ld D=%ld x_scale=%g eps=%g\n", long(N), long(D), c.x_scale, c.eps);
  auto x = st::randn(N * D, seed, c.x_scale);
  auto w = st::uniform(D, seed + 1, 0.5f, 1.5f);
  auto wl = st::randn(N * D, seed + 2);
  std::vector<float> y(N * D), rstd(N);
  cpu::rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), N, D, c.eps);

  auto xd = st::to_double(x), wd = st::to_double(w), wld = st::to_double(wl);
  std::vector<double> yr, rr;
  ref_rmsnorm(yr, rr, xd, wd, N, D, c.eps);
  expect_close(y, yr, 1e-6, 1e-5, "y");
  expect_close(rstd, rr, 0, 1e-5, "rstd");

  std::vector<float> dx(N * D, 1e30f), dw0 = st::randn(D, seed + 3), dw = dw0;
  cpu::rmsnorm_backward(dx.data(), dw.data(), wl.data(), x.data(), w.data(), rstd.data(), N, D);

  auto loss = [&] {
    ref_rmsnorm(yr, rr, xd, wd, N, D, c.eps);
    return weighted_sum(yr, wld);
  };
  std::vector<size_t> idx;
  if (nx <= 0) {
    for (size_t i = 0; i < size_t(N * D); ++i) idx.push_back(i);
  } else {
    Rng r(seed + 4);
    for (int k = 0; k < nx; ++k) idx.push_back(r.below(N * D));
  }
  std::vector<double> got_dx;
  for (size_t i : idx) got_dx.push_back(dx[i]);
  // Derivatives scale like 1/x_scale; the tolerance follows.
  const double s = 1.0 / c.x_scale;
  expect_close(got_dx, fd_at(xd, idx, loss, 1e-6 * c.x_scale), 2e-5 * s, 1e-3, "dx vs FD");

  std::vector<size_t> all_w;
  for (size_t i = 0; i < size_t(D); ++i) all_w.push_back(i);
  std::vector<double> got_dw;
  for (int64_t d = 0; d < D; ++d) got_dw.push_back(double(dw[d]) - double(dw0[d]));
  expect_close(got_dw, fd_at(wd, all_w, loss), 1e-4 * std::sqrt(double(N)), 1e-4, "dw (accumulated) vs FD");
}

}  // namespace

TEST(RmsNorm, TinyAndOddShapes) {
  check_case({1, 1, 1.0f, 1e-5f}, 0, 10);
  check_case({3, 7, 1.0f, 1e-5f}, 0, 11);
  check_case({4, 67, 1.0f, 1e-6f}, 0, 12);  // D past one 64-channel dw block
  check_case({2, 130, 0.5f, 1e-5f}, 0, 13);
}

TEST(RmsNorm, EpsMattersForSmallInputs) {
  // mean(x^2) ~ 1e-4 is comparable to eps = 1e-4: a kernel that drops or misplaces eps fails.
  check_case({5, 33, 1e-2f, 1e-4f}, 0, 20);
}

TEST(RmsNorm, ThreadedPath) {
  // N * D above the OpenMP threshold; dx checked at sampled positions, dw fully.
  check_case({301, 130, 1.0f, 1e-5f}, 300, 30);
}

TEST(RmsNorm, BackwardIndependentOfThreadCount) {
  // Bit-exact resume across runs relies on reductions that do not depend on the thread count.
  const int64_t N = 513, D = 200;
  auto x = st::randn(N * D, 40), w = st::randn(D, 41), dy = st::randn(N * D, 42);
  std::vector<float> y(N * D), rstd(N);
  cpu::rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), N, D, 1e-5f);
  std::vector<float> dx1(N * D), dx2(N * D), dw1(D, 0.0f), dw2(D, 0.0f);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  cpu::rmsnorm_backward(dx1.data(), dw1.data(), dy.data(), x.data(), w.data(), rstd.data(), N, D);
  omp_set_num_threads(2);
  cpu::rmsnorm_backward(dx2.data(), dw2.data(), dy.data(), x.data(), w.data(), rstd.data(), N, D);
  omp_set_num_threads(saved);
  EXPECT_EQ(dx1, dx2);
  EXPECT_EQ(dw1, dw2);
}
