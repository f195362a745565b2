#pragma once
// The whole-layer gradient check that tests/test_layer_*.cpp share: backward's parameter gradients
// (accumulated onto random pre-filled values, so a backward that assigns instead of adding fails)
// and dx (assigned: pre-filled with garbage) against fp32 central finite differences of
// loss = sum(w * y), at randomly picked entries. The FD side runs the fp32 forward and sums in double.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/rng.h"
#include "testing.h"

namespace strata::testing {

struct GradCheck {
  int64_t B = 2, T = 6;
  // FD step: the loss carries an fp32 rounding of ~1e-6 relative, i.e. FD noise ~1e-6 / h; the step
  // keeps that inside the tolerance while the truncation error (h^2 f'''/6, or h^4 for five points)
  // stays small.
  float h = 2e-3f;
  bool five_point = false;  // fourth-order difference: less noise-sensitive at a larger h
  uint64_t seed = 40;       // x, w, the pre-filled grads and the picks use seed + 1 .. + 4
  int param_samples = 20, dx_samples = 20;
  double atol = 2e-3, rtol = 2e-2;
  // The largest sampled |FD| must exceed these for the check to mean anything (0: not required).
  double min_param_grad = 0.0, min_dx_grad = 0.05;
};

// Fixture: the test file's layer fixture, with members store (ParamStore), arena, ctx, blk and
// forward(x, B, T, training) -> y. D is the model width (x and y are [B, T, D]).
template <class Fixture>
void check_layer_gradients(Fixture& f, int64_t D, const GradCheck& o) {
  const int64_t N = o.B * o.T;
  auto x = randn(size_t(N * D), o.seed + 1), w = randn(size_t(N * D), o.seed + 2);
  auto g0 = randn(size_t(f.store.numel()), o.seed + 3);
  std::memcpy(f.store.flat_grad(), g0.data(), sizeof(float) * g0.size());
  f.forward(x, o.B, o.T, true);
  std::vector<float> dx(size_t(N * D), 1e30f);
  f.blk->backward(f.ctx, dx.data(), w.data(), o.B, o.T);

  auto loss = [&] {
    f.arena.reset();
    auto y = f.forward(x, o.B, o.T, false);
    double s = 0;
    for (int64_t i = 0; i < N * D; ++i) s += double(w[size_t(i)]) * y[size_t(i)];
    return s;
  };
  const float h = o.h;
  auto fd = [&](float* v, int64_t i) {
    const float keep = v[i];
    auto at = [&](float off) {
      v[i] = keep + off;
      return loss();
    };
    double d;
    if (o.five_point)
      d = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12.0 * double(h));
    else
      d = (at(h) - at(-h)) / (2.0 * double(h));
    v[i] = keep;
    return d;
  };
  Rng pick(o.seed + 4);
  for (auto& in : f.store.infos()) {
    std::vector<double> got, want;
    double gmax = 0;
    for (int s = 0; s < o.param_samples; ++s) {
      const int64_t i = int64_t(pick.below(uint64_t(in.numel)));
      got.push_back(double(f.store.flat_grad()[in.offset + i]) - double(g0[size_t(in.offset + i)]));
      want.push_back(fd(f.store.flat() + in.offset, i));
      gmax = std::max(gmax, std::abs(want.back()));
    }
    expect_close(got, want, o.atol, o.rtol, in.name);
    EXPECT_GE(gmax, o.min_param_grad) << in.name << ": gradients too small for the FD check to mean anything";
  }
  std::vector<double> got, want;
  double gmax = 0;
  for (int s = 0; s < o.dx_samples; ++s) {
    const int64_t i = int64_t(pick.below(uint64_t(N * D)));
    got.push_back(dx[size_t(i)]);
    want.push_back(fd(x.data(), i));
    gmax = std::max(gmax, std::abs(want.back()));
  }
  expect_close(got, want, o.atol, o.rtol, "dx");
  EXPECT_GE(gmax, o.min_dx_grad) << "dx: gradients too small for the FD check to mean anything";
}

}  // namespace strata::testing
