// SiLU and SwiGLU: forward against a double reference (including |x| large enough to overflow a
// naive exp), backward against central finite differences of that reference
// (loss = sum(w * out)), on odd sizes and on the multi-threaded path.
#include <cmath>
#include <functional>
#include <vector>

#include "kernels/cpu/activation.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;
using st::expect_close;

namespace {

double silu_ref(double x) { return x / (1.0 + std::exp(-x)); }

double weighted_sum(const std::vector<double>& a, const std::vector<double>& w) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * w[i];
  return s;
}

// Central difference of f at the listed indices of x.
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

// All indices when N is small, else `ns` random ones plus both ends.
std::vector<size_t> sample(int64_t N, int ns, uint64_t seed) {
  std::vector<size_t> idx;
  if (N <= 300) {
    for (int64_t i = 0; i < N; ++i) idx.push_back(size_t(i));
    return idx;
  }
  Rng r(seed);
  idx = {0, size_t(N - 1)};
  for (int k = 0; k < ns; ++k) idx.push_back(size_t(r.below(uint64_t(N))));
  return idx;
}

// Inputs: normal(scale) with a few entries pushed far out (exp(-x) would overflow fp32 at -90).
std::vector<float> inputs(int64_t N, uint64_t seed, float scale) {
  auto x = st::randn(size_t(N), seed, scale);
  const float far[] = {-90.0f, 90.0f, -30.0f, 30.0f, 0.0f, -1e-3f};
  if (N >= 7)
    for (size_t i = 0; i < 6; ++i) x[(i * 7919) % x.size()] = far[i];
  return x;
}

void check_swiglu(int64_t N, uint64_t seed) {
  std::printf("swiglu N=%ld\n", long(N));
  auto g = inputs(N, seed, 3.0f), u = st::randn(size_t(N), seed + 1), w = st::randn(size_t(N), seed + 2);
  std::vector<float> out(size_t(N), 1e30f);
  cpu::swiglu_forward(out.data(), g.data(), u.data(), N);
  auto gd = st::to_double(g), ud = st::to_double(u), wd = st::to_double(w);
  std::vector<double> ref(static_cast<size_t>(N));
  auto fwd = [&] {
    for (int64_t i = 0; i < N; ++i) ref[i] = silu_ref(gd[i]) * ud[i];
    return weighted_sum(ref, wd);
  };
  fwd();
  expect_close(out, ref, 1e-6, 1e-5, "out");

  std::vector<float> dg(size_t(N), 1e30f), du(size_t(N), 1e30f);  // must be assigned
  cpu::swiglu_backward(dg.data(), du.data(), w.data(), g.data(), u.data(), N);
  auto idx = sample(N, 60, seed + 3);
  std::vector<double> got_g, got_u;
  for (size_t i : idx) got_g.push_back(dg[i]), got_u.push_back(du[i]);
  // The loss sums N terms, so its rounding (~1e-16 N) divided by 2h bounds the FD noise.
  const double atol = 1e-5 + 1e-16 * double(N) / 1e-6;
  expect_close(got_g, fd_at(gd, idx, fwd), atol, 1e-4, "dgate vs FD");
  expect_close(got_u, fd_at(ud, idx, fwd), atol, 1e-4, "dup vs FD");
}

void check_silu(int64_t N, uint64_t seed) {
  std::printf("silu N=%ld\n", long(N));
  auto x = inputs(N, seed, 3.0f), w = st::randn(size_t(N), seed + 2);
  std::vector<float> out(size_t(N), 1e30f);
  cpu::silu_forward(out.data(), x.data(), N);
  auto xd = st::to_double(x), wd = st::to_double(w);
  std::vector<double> ref(static_cast<size_t>(N));
  auto fwd = [&] {
    for (int64_t i = 0; i < N; ++i) ref[i] = silu_ref(xd[i]);
    return weighted_sum(ref, wd);
  };
  fwd();
  expect_close(out, ref, 1e-6, 1e-5, "out");

  std::vector<float> inplace = x;  // out may equal x
  cpu::silu_forward(inplace.data(), inplace.data(), N);
  expect_close(inplace, out, 0, 0, "in place == out of place");

  std::vector<float> dx(size_t(N), 1e30f);
  cpu::silu_backward(dx.data(), w.data(), x.data(), N);
  auto idx = sample(N, 60, seed + 3);
  std::vector<double> got;
  for (size_t i : idx) got.push_back(dx[i]);
  const double atol = 1e-5 + 1e-16 * double(N) / 1e-6;
  expect_close(got, fd_at(xd, idx, fwd), atol, 1e-4, "dx vs FD");
}

}  // namespace

TEST(SwiGLU, SmallAndOddSizes) {
  for (int64_t N : {1, 7, 33, 257}) check_swiglu(N, 100 + uint64_t(N));
}

TEST(SwiGLU, ThreadedPath) { check_swiglu(40001, 7); }

TEST(SiLU, SmallAndOddSizes) {
  for (int64_t N : {1, 9, 65, 255}) check_silu(N, 200 + uint64_t(N));
}

TEST(SiLU, ThreadedPath) { check_silu(50003, 8); }

TEST(SiLU, ExtremesAreFinite) {
  // Saturated tails: silu(-1e4) -> -0, silu(1e4) -> 1e4, derivative -> 0 and 1; no inf/NaN.
  std::vector<float> x = {-1e4f, -200.0f, -88.0f, 88.0f, 200.0f, 1e4f}, y(6), dx(6), one(6, 1.0f);
  cpu::silu_forward(y.data(), x.data(), 6);
  cpu::silu_backward(dx.data(), one.data(), x.data(), 6);
  for (int i = 0; i < 6; ++i) {
    EXPECT_TRUE(std::isfinite(y[i]) && std::isfinite(dx[i])) << "x=" << x[i];
    const double want_y = x[i] > 0 ? x[i] : 0.0, want_dx = x[i] > 0 ? 1.0 : 0.0;
    EXPECT_NEAR(y[i], want_y, 1e-3 * std::abs(x[i]) * 1e-3) << "x=" << x[i];
    EXPECT_NEAR(dx[i], want_dx, 1e-6) << "x=" << x[i];
  }
}
