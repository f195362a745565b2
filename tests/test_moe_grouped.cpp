// Grouped expert linear (cpu::moe_grouped_linear_*): forward against a double-precision per-expert
// product, backward (dinp assigned / accumulated, dW accumulated, idle experts untouched) against
// central finite differences of loss = sum(wl * out) in double.
#include <cmath>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/moe.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;

namespace {

struct Grouped {
  int64_t E, IC, OC, w_stride;
  std::vector<int32_t> offsets;  // E + 1
  int64_t rows() const { return offsets.back(); }
};

// out[r, o] = sum_i inp[r, i] W_e[o, i] in double, e the expert owning row r.
std::vector<double> ref_forward(const Grouped& g, const std::vector<double>& inp, const std::vector<double>& w) {
  std::vector<double> out(size_t(g.rows() * g.OC), 0.0);
  for (int64_t e = 0; e < g.E; ++e)
    for (int64_t r = g.offsets[e]; r < g.offsets[e + 1]; ++r)
      for (int64_t o = 0; o < g.OC; ++o) {
        double s = 0;
        for (int64_t i = 0; i < g.IC; ++i) s += inp[r * g.IC + i] * w[e * g.w_stride + o * g.IC + i];
        out[r * g.OC + o] = s;
      }
  return out;
}

// Experts 0..3 with 5, 0 (idle), 70 (two 64-row tiles on the GPU) and 1 rows; weights padded apart
// (w_stride > OC * IC) as other parameters sit between them in a layer's buffer.
Grouped make_case() { return Grouped{4, 19, 23, 19 * 23 + 7, {0, 5, 5, 75, 76}}; }

TEST(MoeGroupedLinear, ForwardMatchesReference) {
  const Grouped g = make_case();
  const auto inp = st::randn(size_t(g.rows() * g.IC), 1), w = st::randn(size_t(g.E * g.w_stride), 2);
  std::vector<float> out(size_t(g.rows() * g.OC), 1e30f);  // must be assigned
  cpu::moe_grouped_linear_forward(out.data(), inp.data(), w.data(), g.w_stride, g.offsets.data(), g.rows(), g.E, g.IC,
                                  g.OC);
  st::expect_close(out, ref_forward(g, st::to_double(inp), st::to_double(w)), 1e-5, 1e-5, "out");
}

TEST(MoeGroupedLinear, BackwardMatchesFiniteDifferences) {
  const Grouped g = make_case();
  const auto inp = st::randn(size_t(g.rows() * g.IC), 3), w = st::randn(size_t(g.E * g.w_stride), 4),
             wl = st::randn(size_t(g.rows() * g.OC), 5);
  auto ind = st::to_double(inp), wd = st::to_double(w);
  const auto wld = st::to_double(wl);
  auto loss = [&] {
    const auto out = ref_forward(g, ind, wd);
    double s = 0;
    for (size_t i = 0; i < out.size(); ++i) s += wld[i] * out[i];
    return s;
  };
  const auto want_dinp = st::finite_diff(ind, loss), want_dw = st::finite_diff(wd, loss);

  // dinp assigned, then accumulated onto a known start; dW accumulated (padding and idle experts keep 0).
  std::vector<float> dinp(inp.size(), 1e30f), dw(w.size(), 0.0f);
  cpu::moe_grouped_linear_backward(dinp.data(), dw.data(), wl.data(), inp.data(), w.data(), g.w_stride,
                                   g.offsets.data(), g.rows(), g.E, g.IC, g.OC, false);
  st::expect_close(dinp, want_dinp, 1e-5, 1e-4, "dinp (assigned)");
  st::expect_close(dw, want_dw, 1e-5, 1e-4, "dW (accumulated from 0)");
  auto dinp2 = st::randn(inp.size(), 6);
  std::vector<double> want2(dinp2.size());
  for (size_t i = 0; i < want2.size(); ++i) want2[i] = dinp2[i] + want_dinp[i];
  cpu::moe_grouped_linear_backward(dinp2.data(), nullptr, wl.data(), inp.data(), w.data(), g.w_stride,
                                   g.offsets.data(), g.rows(), g.E, g.IC, g.OC, true);
  st::expect_close(dinp2, want2, 1e-5, 1e-4, "dinp (accumulated)");
}

TEST(MoeGroupedLinear, RejectsOffsetsOutsideTheRows) {
  Grouped g = make_case();
  const auto inp = st::randn(size_t(g.rows() * g.IC), 7), w = st::randn(size_t(g.E * g.w_stride), 8);
  std::vector<float> out(size_t(g.rows() * g.OC));
  EXPECT_THROW(cpu::moe_grouped_linear_forward(out.data(), inp.data(), w.data(), g.w_stride, g.offsets.data(),
                                               g.rows() - 1, g.E, g.IC, g.OC),
               Error);
}

}  // namespace
