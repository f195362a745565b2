// Gated RMSNorm (Mamba-2, norm_before_gate=False, grouped rms): forward against a double reference,
// backward (dx, dz, dw) against central finite differences of that reference, with one and several
// groups, odd sizes and the threaded path.
#include <omp.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/norm.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;
using st::expect_close;

namespace {

// g = x * silu(z); y = g / sqrt(mean_group(g^2) + eps) * w, all in double.  x, z[N, D] -> y, rstd[N, D/group]
void ref_gated(std::vector<double>& y, std::vector<double>& rstd, const std::vector<double>& x,
               const std::vector<double>& z, const std::vector<double>& w, int64_t N, int64_t D, int64_t group,
               double eps) {
  const int64_t ng = D / group;
  y.assign(N * D, 0.0);
  rstd.assign(N * ng, 0.0);
  std::vector<double> g(D);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t d = 0; d < D; ++d) {
      const double zz = z[n * D + d];
      g[d] = x[n * D + d] * zz / (1.0 + std::exp(-zz));
    }
    for (int64_t k = 0; k < ng; ++k) {
      double ss = 0;
      for (int64_t d = k * group; d < (k + 1) * group; ++d) ss += g[d] * g[d];
      const double r = 1.0 / std::sqrt(ss / double(group) + eps);
      rstd[n * ng + k] = r;
      for (int64_t d = k * group; d < (k + 1) * group; ++d) y[n * D + d] = g[d] * r * w[d];
    }
  }
}

double weighted_sum(const std::vector<double>& a, const std::vector<double>& w) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * w[i];
  return s;
}

// Central differences of f at the listed indices of v.
std::vector<double> fd_at(std::vector<double>& v, const std::vector<size_t>& idx, const std::function<double()>& f) {
  const double h = 1e-6;
  std::vector<double> g;
  for (size_t i : idx) {
    const double keep = v[i];
    v[i] = keep + h;
    const double fp = f();
    v[i] = keep - h;
    const double fm = f();
    v[i] = keep;
    g.push_back((fp - fm) / (2 * h));
  }
  return g;
}

std::vector<size_t> pick(size_t n, int count, uint64_t seed) {
  std::vector<size_t> idx;
  if (count <= 0) {
    for (size_t i = 0; i < n; ++i) idx.push_back(i);
  } else {
    Rng r(seed);
    for (int k = 0; k < count; ++k) idx.push_back(size_t(r.below(n)));
  }
  return idx;
}

// One shape: forward values and rstd, then dx/dz at `ns` sampled positions (all if ns <= 0) and all
// of dw against FD. dx/dz pre-filled with garbage (must be assigned), dw random (accumulated into).
void check_case(int64_t N, int64_t D, int64_t group, int ns, uint64_t seed) {
  std::printf("rmsnorm_gated N=%ld D=%ld group=%ld\n", long(N), long(D), long(group));
  const float eps = 1e-5f;
  const int64_t ng = D / group;
  auto x = st::randn(N * D, seed), z = st::randn(N * D, seed + 1, 2.0f);
  auto w = st::uniform(D, seed + 2, 0.5f, 1.5f);
  auto wl = st::randn(N * D, seed + 3);
  std::vector<float> y(N * D, 1e30f), rstd(N * ng, 1e30f);
  cpu::rmsnorm_gated_forward(y.data(), rstd.data(), x.data(), z.data(), w.data(), N, D, group, eps);

  auto xd = st::to_double(x), zd = st::to_double(z), wd = st::to_double(w), wld = st::to_double(wl);
  std::vector<double> yr, rr;
  ref_gated(yr, rr, xd, zd, wd, N, D, group, eps);
  expect_close(y, yr, 1e-5, 1e-4, "y");
  expect_close(rstd, rr, 0, 1e-4, "rstd");

  std::vector<float> dx(N * D, 1e30f), dz(N * D, 1e30f), dw0 = st::randn(D, seed + 4), dw = dw0;
  cpu::rmsnorm_gated_backward(dx.data(), dz.data(), dw.data(), wl.data(), x.data(), z.data(), w.data(), rstd.data(),
                              N, D, group);
  auto loss = [&] {
    ref_gated(yr, rr, xd, zd, wd, N, D, group, eps);
    return weighted_sum(yr, wld);
  };
  auto idx = pick(size_t(N * D), ns, seed + 5);
  std::vector<double> gx, gz;
  for (size_t i : idx) gx.push_back(dx[i]), gz.push_back(dz[i]);
  expect_close(gx, fd_at(xd, idx, loss), 1e-4, 1e-3, "dx vs FD");
  expect_close(gz, fd_at(zd, idx, loss), 1e-4, 1e-3, "dz vs FD");
  std::vector<double> gw;
  for (int64_t d = 0; d < D; ++d) gw.push_back(double(dw[d]) - double(dw0[d]));
  expect_close(gw, fd_at(wd, pick(size_t(D), 0, 0), loss), 1e-4 * std::sqrt(double(N)), 1e-4, "dw (accumulated) vs FD");
}

}  // namespace

TEST(RmsNormGated, OneGroup) {
  check_case(1, 1, 1, 0, 10);
  check_case(3, 7, 7, 0, 11);
  check_case(4, 40, 40, 0, 12);
}

TEST(RmsNormGated, SeveralGroups) {
  // A kernel that normalises over the whole row instead of per group fails these.
  check_case(5, 12, 4, 0, 20);
  check_case(3, 66, 33, 0, 21);
  check_case(2, 24, 3, 0, 22);
}

TEST(RmsNormGated, ThreadedPath) {
  // N * D above the OpenMP threshold and more than one 64-row dw chunk.
  check_case(150, 128, 64, 200, 30);
}

TEST(RmsNormGated, BackwardIndependentOfThreadCount) {
  const int64_t N = 300, D = 96, group = 48;
  auto x = st::randn(N * D, 40), z = st::randn(N * D, 41), w = st::randn(D, 42), dy = st::randn(N * D, 43);
  std::vector<float> y(N * D), rstd(N * 2);
  cpu::rmsnorm_gated_forward(y.data(), rstd.data(), x.data(), z.data(), w.data(), N, D, group, 1e-5f);
  std::vector<float> dx1(N * D), dx2(N * D), dz1(N * D), dz2(N * D), dw1(D, 0.0f), dw2(D, 0.0f);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  cpu::rmsnorm_gated_backward(dx1.data(), dz1.data(), dw1.data(), dy.data(), x.data(), z.data(), w.data(),
                              rstd.data(), N, D, group);
  omp_set_num_threads(2);
  cpu::rmsnorm_gated_backward(dx2.data(), dz2.data(), dw2.data(), dy.data(), x.data(), z.data(), w.data(),
                              rstd.data(), N, D, group);
  omp_set_num_threads(saved);
  EXPECT_EQ(dx1, dx2);
  EXPECT_EQ(dz1, dz2);
  EXPECT_EQ(dw1, dw2);
}
