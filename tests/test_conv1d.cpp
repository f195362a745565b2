// Causal depthwise conv1d: forward against a double reference, backward against central finite
// differences of it (loss = sum(w_loss * y)), step and state_from_sequence against forward, and
// thread-count independence of the backward.
#include <omp.h>

#include <cmath>
#include <functional>
#include <vector>

#include "kernels/cpu/conv1d.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;
using st::expect_close;

namespace {

using dvec = std::vector<double>;

struct Case {
  int64_t B, T, C, K;
  bool bias, silu;
};

// x[B, T, C], w[C, K], bias[C] (empty: none) -> y[B, T, C] in double.
void ref_conv(dvec& y, const dvec& x, const dvec& w, const dvec& bias, const Case& c) {
  y.assign(c.B * c.T * c.C, 0.0);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t ch = 0; ch < c.C; ++ch) {
        double acc = bias.empty() ? 0.0 : bias[ch];
        for (int64_t j = 0; j < c.K; ++j) {
          const int64_t s = t - (c.K - 1) + j;
          if (s >= 0) acc += w[ch * c.K + j] * x[(b * c.T + s) * c.C + ch];
        }
        if (c.silu) acc = acc / (1.0 + std::exp(-acc));
        y[(b * c.T + t) * c.C + ch] = acc;
      }
}

struct Data {
  std::vector<float> x, w, bias;
};
Data make_data(const Case& c, uint64_t seed) {
  return {st::randn(c.B * c.T * c.C, seed), st::randn(c.C * c.K, seed + 1, 0.5f), st::randn(c.C, seed + 2)};
}

std::vector<float> run_forward(const Data& d, const Case& c) {
  std::vector<float> y(c.B * c.T * c.C, 1e30f);
  cpu::conv1d_causal_forward(y.data(), d.x.data(), d.w.data(), c.bias ? d.bias.data() : nullptr, c.B, c.T, c.C, c.K,
                             c.silu);
  return y;
}

void print_case(const char* what, const Case& c) {
  std::printf("conv1d %s B=%ld T=%ld C=%ld K=%ld bias=%d silu=%d\n", what, long(c.B), long(c.T), long(c.C), long(c.K),
              c.bias, c.silu);
}

void check_forward(const Case& c, uint64_t seed) {
  print_case("forward", c);
  Data d = make_data(c, seed);
  auto y = run_forward(d, c);
  dvec yr;
  ref_conv(yr, st::to_double(d.x), st::to_double(d.w), c.bias ? st::to_double(d.bias) : dvec{}, c);
  expect_close(y, yr, 1e-6, 1e-5, "y");
}

dvec fd_at(dvec& x, const std::vector<size_t>& idx, const std::function<double()>& f, double h = 1e-6) {
  dvec g;
  for (size_t i : idx) {
    const double keep = x[i];
    x[i] = keep + h;
    const double fp = f();
    x[i] = keep - h;
    const double fm = f();
    x[i] = keep;
    g.push_back((fp - fm) / (2 * h));
  }
  return g;
}

std::vector<size_t> all_indices(size_t n) {
  std::vector<size_t> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = i;
  return idx;
}

struct Grads {
  std::vector<float> dx, dw, db;
};
Grads run_backward(const Data& d, const Case& c, const std::vector<float>& wl, const Grads& base) {
  Grads g = base;
  g.dx.assign(c.B * c.T * c.C, 1e30f);
  cpu::conv1d_causal_backward(g.dx.data(), g.dw.data(), c.bias ? g.db.data() : nullptr, wl.data(), d.x.data(),
                              d.w.data(), c.bias ? d.bias.data() : nullptr, c.B, c.T, c.C, c.K, c.silu);
  return g;
}

void check_backward(const Case& c, uint64_t seed) {
  print_case("backward", c);
  Data d = make_data(c, seed);
  auto wl = st::randn(c.B * c.T * c.C, seed + 10);
  Grads base{{}, st::randn(c.C * c.K, seed + 11), st::randn(c.C, seed + 12)};
  Grads g = run_backward(d, c, wl, base);

  dvec xd = st::to_double(d.x), wd = st::to_double(d.w), bd = c.bias ? st::to_double(d.bias) : dvec{};
  const dvec wld = st::to_double(wl);
  dvec yr;
  auto loss = [&] {
    ref_conv(yr, xd, wd, bd, c);
    double l = 0;
    for (size_t i = 0; i < yr.size(); ++i) l += yr[i] * wld[i];
    return l;
  };
  const double at = 2e-5 * std::sqrt(double(c.B * c.T)), rt = 1e-3;
  expect_close(g.dx, fd_at(xd, all_indices(xd.size()), loss), at, rt, "dx vs FD");
  dvec gw, gb;
  for (size_t i = 0; i < g.dw.size(); ++i) gw.push_back(double(g.dw[i]) - base.dw[i]);
  expect_close(gw, fd_at(wd, all_indices(wd.size()), loss), at, rt, "dw (accumulated) vs FD");
  if (c.bias) {
    for (size_t i = 0; i < g.db.size(); ++i) gb.push_back(double(g.db[i]) - base.db[i]);
    expect_close(gb, fd_at(bd, all_indices(bd.size()), loss), at, rt, "dbias (accumulated) vs FD");
  } else {
    EXPECT_EQ(g.db, base.db);
  }
}

// Steps from a zero state reproduce forward; state_from_sequence over a prefix equals the state the
// steps over that prefix leave, and steps continued from it reproduce the rest of forward.
void check_step(const Case& c, int64_t T1, uint64_t seed) {
  print_case("step", c);
  Data d = make_data(c, seed);
  auto y = run_forward(d, c);
  const int64_t S = c.K - 1;
  std::vector<float> state(c.B * c.C * S, 0.0f), xt(c.B * c.C), yt(c.B * c.C), ys(y.size()), ys2(y.size());
  std::vector<float> prefix_state(c.B * c.C * S, 0.0f);
  auto step = [&](std::vector<float>& st_, std::vector<float>& out, int64_t t) {
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t ch = 0; ch < c.C; ++ch) xt[b * c.C + ch] = d.x[(b * c.T + t) * c.C + ch];
    cpu::conv1d_causal_step(yt.data(), st_.data(), xt.data(), d.w.data(), c.bias ? d.bias.data() : nullptr, c.B, c.C,
                            c.K, c.silu);
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t ch = 0; ch < c.C; ++ch) out[(b * c.T + t) * c.C + ch] = yt[b * c.C + ch];
  };
  for (int64_t t = 0; t < c.T; ++t) {
    step(state, ys, t);
    if (t + 1 == T1) prefix_state = state;
  }
  expect_close(ys, y, 1e-6, 1e-6, "steps vs forward");

  // The prefix x[:, :T1] as its own contiguous tensor.
  std::vector<float> xp(c.B * T1 * c.C), sp(c.B * c.C * S, 1e30f);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t t = 0; t < T1; ++t)
      for (int64_t ch = 0; ch < c.C; ++ch) xp[(b * T1 + t) * c.C + ch] = d.x[(b * c.T + t) * c.C + ch];
  cpu::conv1d_state_from_sequence(sp.data(), xp.data(), c.B, T1, c.C, c.K);
  EXPECT_EQ(sp, prefix_state) << "state_from_sequence vs steps over the prefix";
  ys2 = y;
  for (int64_t t = T1; t < c.T; ++t) step(sp, ys2, t);
  expect_close(ys2, y, 1e-6, 1e-6, "prefix state + steps vs forward");
}

}  // namespace

TEST(Conv1d, ForwardShapes) {
  check_forward({1, 1, 1, 4, true, false}, 1);
  check_forward({2, 7, 5, 4, true, true}, 2);
  check_forward({1, 2, 3, 4, false, true}, 3);    // T < K - 1
  check_forward({3, 130, 37, 3, true, true}, 4);  // past two backward chunks
  check_forward({2, 9, 6, 1, true, false}, 5);    // K = 1: pointwise
}

TEST(Conv1d, BackwardMatchesFiniteDifferences) {
  check_backward({2, 7, 5, 4, true, true}, 10);
  check_backward({1, 2, 3, 4, false, true}, 11);
  check_backward({2, 9, 4, 3, true, false}, 12);
  check_backward({2, 70, 3, 4, true, true}, 13);  // T not a multiple of the 64-token chunk
  check_backward({1, 5, 2, 1, true, true}, 14);
}

TEST(Conv1d, StepAndStateMatchForward) {
  check_step({2, 11, 6, 4, true, true}, 5, 20);
  check_step({2, 11, 6, 4, false, false}, 2, 21);  // prefix shorter than the state
  check_step({1, 6, 3, 2, true, true}, 6, 22);     // prefix = whole sequence
  check_step({3, 5, 4, 1, true, true}, 3, 23);     // K = 1: empty state
}

TEST(Conv1d, ForwardThreadedPath) {
  // Above the OpenMP threshold.
  check_forward({4, 160, 96, 4, true, true}, 30);
}

TEST(Conv1d, BackwardIndependentOfThreadCount) {
  const Case c{3, 150, 96, 4, true, true};
  Data d = make_data(c, 40);
  auto wl = st::randn(c.B * c.T * c.C, 41);
  Grads base{{}, std::vector<float>(c.C * c.K, 0.0f), std::vector<float>(c.C, 0.0f)};
  const int keep = omp_get_max_threads();
  omp_set_num_threads(1);
  Grads g1 = run_backward(d, c, wl, base);
  omp_set_num_threads(2);
  Grads g2 = run_backward(d, c, wl, base);
  omp_set_num_threads(keep);
  EXPECT_EQ(g1.dx, g2.dx);
  EXPECT_EQ(g1.dw, g2.dw);
  EXPECT_EQ(g1.db, g2.db);
}
