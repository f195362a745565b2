// AdamW against a double reference over several steps (bias correction changes with t), with and
// without a decay mask, with a clipping grad_scale; sum_squares against a double sum, across chunk
// boundaries and thread counts.
#include <omp.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/optim.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;
using st::expect_close;

namespace {

struct Hyper {
  float lr, b1, b2, eps, wd, gs;
};

// One AdamW step in double on p, m, v[N]; mask may be empty (all decayed).
void ref_adamw(std::vector<double>& p, std::vector<double>& m, std::vector<double>& v, const std::vector<float>& g,
               const std::vector<uint8_t>& mask, const Hyper& h, int t) {
  const double b1 = h.b1, b2 = h.b2;
  for (size_t i = 0; i < p.size(); ++i) {
    double gi = double(g[i]) * double(h.gs);
    m[i] = b1 * m[i] + (1 - b1) * gi;
    v[i] = b2 * v[i] + (1 - b2) * gi * gi;
    double mhat = m[i] / (1 - std::pow(b1, t)), vhat = v[i] / (1 - std::pow(b2, t));
    double decay = mask.empty() ? 1.0 : double(mask[i]);
    p[i] -= double(h.lr) * mhat / (std::sqrt(vhat) + double(h.eps)) + double(h.lr) * double(h.wd) * decay * p[i];
  }
}

void check_steps(int64_t N, const Hyper& h, bool with_mask, int steps, uint64_t seed) {
  std::printf("adamw N=%ld lr=%g b1=%g b2=%g wd=%g grad_scale=%g mask=%d steps=%d\n", long(N), h.lr, h.b1, h.b2, h.wd,
              h.gs, int(with_mask), steps);
  auto p = st::randn(N, seed);
  std::vector<float> m(N, 0.0f), v(N, 0.0f);
  std::vector<uint8_t> mask;
  if (with_mask) {
    Rng r(seed + 1);
    for (int64_t i = 0; i < N; ++i) mask.push_back(uint8_t(r.below(2)));
  }
  auto pd = st::to_double(p);
  std::vector<double> md(N, 0.0), vd(N, 0.0);
  for (int t = 1; t <= steps; ++t) {
    // Gradients of varying scale, some exactly zero (then the update is decay only).
    auto g = st::randn(N, seed + 10 + t, t % 2 ? 1.0f : 1e-3f);
    for (int64_t i = 0; i < N; i += 17) g[i] = 0.0f;
    cpu::adamw_update(p.data(), g.data(), m.data(), v.data(), with_mask ? mask.data() : nullptr, N, h.lr, h.b1, h.b2,
                      h.eps, h.wd, t, h.gs);
    ref_adamw(pd, md, vd, g, mask, h, t);
  }
  // Each step moves p by O(lr); errors are float rounding of those moves and of p itself.
  expect_close(p, pd, 1e-6 + 1e-4 * h.lr * steps, 1e-6, "params");
  // m and v mix gradients of scale 1 and 1e-3: absolute float error follows the larger ones.
  expect_close(m, md, 1e-7, 1e-5, "m");
  expect_close(v, vd, 1e-9, 1e-5, "v");
}

}  // namespace

TEST(AdamW, SeveralStepsAgainstDoubleReference) {
  check_steps(1, {1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, 1.0f}, false, 3, 1);
  check_steps(1001, {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f}, false, 6, 2);
  check_steps(1001, {3e-3f, 0.8f, 0.99f, 1e-6f, 0.5f, 1.0f}, true, 6, 3);
}

TEST(AdamW, GradScaleAndThreadedPath) {
  // grad_scale < 1 as set by global-norm clipping; N above the OpenMP threshold and odd.
  check_steps(70001, {1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, 0.25f}, true, 4, 4);
}

TEST(AdamW, FirstStepIsSignLikeAndMaskStopsDecay) {
  // At t = 1 bias correction makes the step lr * g / (|g| + eps) (= lr * sign(g) for |g| >> eps),
  // whatever b1, b2; masked-out parameters see no decay.
  const int64_t N = 4;
  std::vector<float> p = {1.0f, 1.0f, -2.0f, 0.5f}, g = {3.0f, -0.01f, 0.0f, 0.0f};
  std::vector<float> m(N, 0.0f), v(N, 0.0f);
  std::vector<uint8_t> mask = {1, 0, 1, 0};
  const float lr = 0.1f, wd = 0.5f;
  cpu::adamw_update(p.data(), g.data(), m.data(), v.data(), mask.data(), N, lr, 0.9f, 0.999f, 1e-8f, wd, 1, 1.0f);
  std::vector<double> want = {1.0 - lr - lr * wd * 1.0, 1.0 + lr, -2.0 + lr * wd * 2.0, 0.5};
  expect_close(p, want, 1e-6, 1e-6, "first step");
}

TEST(SumSquares, AgainstDoubleAcrossChunks) {
  for (int64_t N : {0L, 1L, 7L, 65536L, 65537L, 300001L}) {
    auto x = st::randn(size_t(N), 50 + N, 3.0f);
    double want = 0;
    for (float xi : x) want += double(xi) * double(xi);
    double got = cpu::sum_squares(x.data(), N);
    std::printf("sum_squares N=%ld got=%.17g want=%.17g\n", long(N), got, want);
    EXPECT_NEAR(got, want, 1e-12 * (want + 1.0));
  }
  // A float accumulator would lose this: 2^26 ones squared after a 2^25-sized first element.
  std::vector<float> big(1 << 17, 1.0f);
  big[0] = 8192.0f;  // 8192^2 = 2^26
  EXPECT_EQ(cpu::sum_squares(big.data(), int64_t(big.size())), 67108864.0 + double(big.size() - 1));
}

TEST(SumSquares, IndependentOfThreadCount) {
  const int64_t N = 1000003;
  auto x = st::randn(N, 60);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  double a = cpu::sum_squares(x.data(), N);
  omp_set_num_threads(2);
  double b = cpu::sum_squares(x.data(), N);
  omp_set_num_threads(saved);
  EXPECT_EQ(a, b);
}
