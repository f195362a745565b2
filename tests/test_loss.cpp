// Fused softmax cross-entropy: losses and mean against a double log-sum-exp reference, the gradient
// against finite differences of dloss_scale * sum(losses), ignored rows, in-place operation,
// extreme logits (max subtraction), and target validation.
#include <cmath>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/loss.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;
using st::expect_close;

namespace {

// logits[N, V] -> per-row loss (0 for ignored rows) in double.
std::vector<double> ref_losses(const std::vector<double>& x, const std::vector<int32_t>& t, int64_t N, int64_t V) {
  std::vector<double> out(N, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    if (t[n] < 0) continue;
    double m = x[n * V];
    for (int64_t v = 0; v < V; ++v) m = std::max(m, x[n * V + v]);
    double s = 0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(x[n * V + v] - m);
    out[n] = std::log(s) + m - x[n * V + t[n]];
  }
  return out;
}

double ref_mean(const std::vector<double>& losses, const std::vector<int32_t>& t) {
  double s = 0;
  int c = 0;
  for (size_t n = 0; n < t.size(); ++n)
    if (t[n] >= 0) s += losses[n], ++c;
  return c ? s / c : 0.0;
}

std::vector<int32_t> random_targets(int64_t N, int64_t V, uint64_t seed, int every_ignored) {
  Rng r(seed);
  std::vector<int32_t> t(N);
  for (int64_t n = 0; n < N; ++n) t[n] = (every_ignored && n % every_ignored == 1) ? -1 : int32_t(r.below(V));
  return t;
}

struct Case {
  int64_t N, V;
  float scale, offset;  // logits = offset + scale * randn
  int every_ignored;    // every k-th row (n % k == 1) ignored; 0: none
  bool in_place;
  bool fd;  // finite differences over every logit (small shapes only)
};

void check_case(const Case& c, uint64_t seed) {
  const int64_t N = c.N, V = c.V;
  std::printf("xent N=%ld V=%ld scale=%g offset=%g ignored_every=%d in_place=%d\n", long(N), long(V), c.scale,
              c.offset, c.every_ignored, int(c.in_place));
  auto logits = st::randn(N * V, seed, c.scale);
  for (auto& x : logits) x += c.offset;
  auto t = random_targets(N, V, seed + 1, c.every_ignored);
  auto xd = st::to_double(logits);
  auto want = ref_losses(xd, t, N, V);
  int counted = 0;
  for (auto ti : t) counted += ti >= 0;
  const float dscale = counted ? 1.0f / float(counted) : 0.0f;

  std::vector<float> losses_f(N, 1e30f);
  float mean_f = cpu::softmax_xent_forward(losses_f.data(), logits.data(), t.data(), N, V);
  // Losses are O(log V + scale); relative float error of the log-sum-exp.
  const double atol = 2e-6 * (1.0 + c.scale);
  expect_close(losses_f, want, atol, 1e-5, "forward losses");
  expect_close(std::vector<double>{mean_f}, std::vector<double>{ref_mean(want, t)}, atol, 1e-5, "forward mean");

  std::vector<float> losses(N, 1e30f), dbuf(N * V, 1e30f);
  float* dl = c.in_place ? logits.data() : dbuf.data();
  float mean = cpu::softmax_xent_forward_backward(losses.data(), dl, logits.data(), t.data(), N, V, dscale);
  expect_close(losses, want, atol, 1e-5, "fwd_bwd losses");
  EXPECT_EQ(mean, mean_f) << "both entry points agree on the mean";
  std::vector<float> got(dl, dl + N * V);

  // Analytic double gradient (checked against FD on small shapes below).
  std::vector<double> gref(N * V, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    if (t[n] < 0) continue;
    double m = xd[n * V];
    for (int64_t v = 0; v < V; ++v) m = std::max(m, xd[n * V + v]);
    double s = 0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(xd[n * V + v] - m);
    for (int64_t v = 0; v < V; ++v) gref[n * V + v] = std::exp(xd[n * V + v] - m) / s * dscale;
    gref[n * V + t[n]] -= dscale;
  }
  expect_close(got, gref, 1e-7 * dscale, 1e-5, "dlogits vs double softmax");
  if (c.fd) {
    auto loss = [&] {
      auto l = ref_losses(xd, t, N, V);
      double s = 0;
      for (double x : l) s += x;
      return s * dscale;
    };
    expect_close(got, st::finite_diff(xd, loss, 1e-5), 1e-8 + 1e-5 * dscale, 1e-4, "dlogits vs FD");
  }
  for (int64_t n = 0; n < N; ++n)
    if (t[n] < 0) {
      EXPECT_EQ(losses[n], 0.0f) << "ignored row " << n;
      for (int64_t v = 0; v < V; ++v) ASSERT_EQ(got[n * V + v], 0.0f) << "ignored row " << n;
    }
}

}  // namespace

TEST(SoftmaxXent, SmallShapesAgainstFiniteDifferences) {
  check_case({1, 1, 1.0f, 0.0f, 0, false, true}, 1);  // V = 1: loss 0, gradient 0
  check_case({3, 5, 1.0f, 0.0f, 0, false, true}, 2);
  check_case({4, 17, 3.0f, 0.0f, 3, false, true}, 3);  // row 1 ignored
  check_case({5, 33, 2.0f, 0.0f, 2, true, true}, 4);   // in place, rows 1 and 3 ignored
}

TEST(SoftmaxXent, OddAndThreadedShapes) {
  check_case({67, 257, 1.0f, 0.0f, 5, false, false}, 10);   // N * V above the OpenMP threshold
  check_case({130, 1000, 4.0f, 0.0f, 0, true, false}, 11);  // in place
}

TEST(SoftmaxXent, ExtremeLogitsNeedMaxSubtraction) {
  // exp(1000) overflows even in double without the max trick; a spread of 30*N(0,1) drives many
  // exponentials below the float range (the clamped region of the kernel's exp).
  check_case({7, 129, 30.0f, 1000.0f, 0, false, true}, 20);
  check_case({9, 300, 30.0f, -1000.0f, 4, true, false}, 21);
}

TEST(SoftmaxXent, ExpAccuracyOverItsRange) {
  // Two logits, 0 and -a: loss of target 1 is log(1 + e^-a) + a, exercising exp at -a over the
  // whole range the kernel sees, including the clamp.
  const int64_t N = 2000, V = 2;
  std::vector<float> x(N * V);
  std::vector<int32_t> t(N, 1);
  std::vector<double> want(N);
  for (int64_t n = 0; n < N; ++n) {
    double a = 100.0 * double(n) / double(N);
    x[n * V] = 0.0f;
    x[n * V + 1] = -float(a);
    double af = double(float(a));
    want[n] = std::log1p(std::exp(-af)) + af;
  }
  std::vector<float> losses(N), dl(N * V);
  cpu::softmax_xent_forward_backward(losses.data(), dl.data(), x.data(), t.data(), N, V, 1.0f);
  expect_close(losses, want, 0, 2e-7, "loss over exp range");
  std::vector<double> want_d(N * V);
  for (int64_t n = 0; n < N; ++n) {
    double p1 = 1.0 / (1.0 + std::exp(double(x[n * V]) - double(x[n * V + 1])));
    want_d[n * V] = 1.0 - p1;
    want_d[n * V + 1] = p1 - 1.0;
  }
  expect_close(dl, want_d, 1e-37, 1e-6, "softmax over exp range");
}

TEST(SoftmaxXent, AllIgnored) {
  const int64_t N = 4, V = 6;
  auto x = st::randn(N * V, 30);
  std::vector<int32_t> t(N, -100);
  std::vector<float> losses(N, 1.0f), dl(N * V, 1.0f);
  EXPECT_EQ(cpu::softmax_xent_forward_backward(losses.data(), dl.data(), x.data(), t.data(), N, V, 1.0f), 0.0f);
  for (float l : losses) EXPECT_EQ(l, 0.0f);
  for (float d : dl) EXPECT_EQ(d, 0.0f);
  EXPECT_EQ(cpu::softmax_xent_forward(losses.data(), x.data(), t.data(), N, V), 0.0f);
}

TEST(SoftmaxXent, RejectsTargetsOutsideVocabulary) {
  const int64_t N = 3, V = 4;
  auto x = st::randn(N * V, 31);
  std::vector<int32_t> t = {0, 4, 1};
  std::vector<float> losses(N), dl(N * V);
  EXPECT_THROW(cpu::softmax_xent_forward_backward(losses.data(), dl.data(), x.data(), t.data(), N, V, 1.0f), Error);
  EXPECT_THROW(cpu::softmax_xent_forward(losses.data(), x.data(), t.data(), N, V), Error);
}
