// RoPE (rotate_half convention): forward against a double reference (full and partial rotary dims,
// offsets, in place), backward against central finite differences of that reference, the
// decode-path identity (T tokens at pos0 == T single-token calls at pos0 + t), and shape checks.
#include <cmath>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/rope.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;
using st::expect_close;

namespace {

using dvec = std::vector<double>;

struct Case {
  int64_t B, T, H, hd, rot, pos0;
  float theta;
};

// out = x with, for i < rot/2, (x_i, x_{i+rot/2}) rotated by angle (pos0 + t) * theta^(-2i/rot); in double.
dvec ref_rope(const dvec& x, const Case& c) {
  dvec out = x;
  const int64_t half = c.rot / 2;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t h = 0; h < c.H; ++h)
        for (int64_t i = 0; i < half; ++i) {
          const double a = double(c.pos0 + t) * std::pow(double(c.theta), -2.0 * double(i) / double(c.rot));
          const int64_t base = ((b * c.T + t) * c.H + h) * c.hd;
          const double x1 = x[base + i], x2 = x[base + i + half];
          out[base + i] = x1 * std::cos(a) - x2 * std::sin(a);
          out[base + i + half] = x2 * std::cos(a) + x1 * std::sin(a);
        }
  return out;
}

int64_t numel(const Case& c) { return c.B * c.T * c.H * c.hd; }

std::vector<float> run_forward(const std::vector<float>& x, const Case& c) {
  std::vector<float> out(x.size(), 1e30f);
  cpu::rope_forward(out.data(), x.data(), c.B, c.T, c.H, c.hd, c.rot, c.pos0, c.theta);
  return out;
}

}  // namespace

TEST(Rope, ForwardMatchesDoubleReference) {
  const Case cases[] = {
      {2, 37, 3, 16, 16, 0, 10000.0f},   // full rotary, odd T
      {1, 5, 2, 32, 16, 7, 10000.0f},    // partial: channels 16..31 pass through, offset positions
      {3, 4, 1, 8, 8, 100000, 500000.0f},  // far positions (Llama-3 theta): angles reach 1e5 rad
      {2, 70, 4, 24, 24, 3, 10000.0f},   // head dim not a power of two
  };
  for (const Case& c : cases) {
    std::printf("rope B=%ld T=%ld H=%ld hd=%ld rot=%ld pos0=%ld\n", long(c.B), long(c.T), long(c.H), long(c.hd),
                long(c.rot), long(c.pos0));
    auto x = st::randn(numel(c), 1 + c.T);
    auto want = ref_rope(st::to_double(x), c);
    auto out = run_forward(x, c);
    // fp32 products of O(1) values; angles in the table are exact to ~1e-11 rad even at pos 1e5.
    expect_close(out, want, 2e-6, 1e-5, "out vs double ref");
    auto inplace = x;
    cpu::rope_forward(inplace.data(), inplace.data(), c.B, c.T, c.H, c.hd, c.rot, c.pos0, c.theta);
    expect_close(inplace, out, 0, 0, "in place == out of place");
  }
}

TEST(Rope, BackwardMatchesFiniteDifferences) {
  const Case cases[] = {{2, 6, 3, 16, 16, 0, 10000.0f}, {1, 5, 2, 12, 8, 9, 100.0f}};
  for (const Case& c : cases) {
    std::printf("rope backward B=%ld T=%ld H=%ld hd=%ld rot=%ld pos0=%ld\n", long(c.B), long(c.T), long(c.H),
                long(c.hd), long(c.rot), long(c.pos0));
    const int64_t n = numel(c);
    auto x = st::randn(n, 11), w = st::randn(n, 12);
    dvec xd = st::to_double(x);
    auto loss = [&] {
      dvec y = ref_rope(xd, c);
      double s = 0;
      for (int64_t i = 0; i < n; ++i) s += double(w[i]) * y[i];
      return s;
    };
    dvec fd = st::finite_diff(xd, loss);
    std::vector<float> dx(n, 1e30f);
    cpu::rope_backward(dx.data(), w.data(), c.B, c.T, c.H, c.hd, c.rot, c.pos0, c.theta);
    expect_close(dx, fd, 1e-6, 1e-5, "dx vs FD");
    auto inplace = w;
    cpu::rope_backward(inplace.data(), inplace.data(), c.B, c.T, c.H, c.hd, c.rot, c.pos0, c.theta);
    expect_close(inplace, dx, 0, 0, "in place == out of place");
  }
}

TEST(Rope, BackwardInvertsForward) {
  // R is orthogonal, so R^T R x = x.
  const Case c{2, 9, 3, 32, 32, 1234, 10000.0f};
  auto x = st::randn(numel(c), 21);
  auto y = run_forward(x, c);
  std::vector<float> back(y.size());
  cpu::rope_backward(back.data(), y.data(), c.B, c.T, c.H, c.hd, c.rot, c.pos0, c.theta);
  expect_close(back, x, 1e-6, 1e-6, "R^T R x vs x");
}

TEST(Rope, TokenByTokenEqualsSequence) {
  // Decode rotates one token at pos0 = cache position; prefill rotates the whole sequence from 0.
  // Both must give the same values, or forward/step parity breaks.
  const Case c{2, 45, 2, 16, 16, 0, 10000.0f};
  auto x = st::randn(numel(c), 31);
  auto seq = run_forward(x, c);
  const int64_t row = c.H * c.hd;
  std::vector<float> tok(x.size());
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t t = 0; t < c.T; ++t) {
      const int64_t o = (b * c.T + t) * row;
      cpu::rope_forward(tok.data() + o, x.data() + o, 1, 1, c.H, c.hd, c.rot, t, c.theta);
    }
  expect_close(tok, seq, 1e-6, 1e-6, "per-token vs sequence");
}

TEST(Rope, RejectsBadRotaryDims) {
  std::vector<float> x(2 * 8), out(2 * 8);
  EXPECT_THROW(cpu::rope_forward(out.data(), x.data(), 1, 2, 1, 8, 7, 0, 1e4f), Error);   // odd
  EXPECT_THROW(cpu::rope_forward(out.data(), x.data(), 1, 2, 1, 8, 10, 0, 1e4f), Error);  // > hd
  EXPECT_THROW(cpu::rope_backward(out.data(), x.data(), 1, 2, 1, 8, 7, 0, 1e4f), Error);
}
