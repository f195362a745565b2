// Mamba-1 selective scan: forward (and final state) against a double-precision selective_scan_ref,
// backward against central finite differences of that reference (loss = sum(w_loss * y)), step
// against forward, and thread-count independence of the backward's reductions.
#include <omp.h>

#include <cmath>
#include <functional>
#include <vector>

#include "kernels/cpu/scan.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;
using st::expect_close;

namespace {

using dvec = std::vector<double>;

struct Shape4 {
  int64_t B, T, D, N;
};

// All inputs of one scan, in float (for the kernel) with double copies (for the reference).
struct Inputs {
  Shape4 s;
  bool has_z, has_h0, has_bias, has_D;
  std::vector<float> u, delta, bias, A, Bm, Cm, Ds, z, h0;
};

Inputs make_inputs(Shape4 s, bool has_z, bool has_h0, bool has_bias, bool has_D, uint64_t seed) {
  Inputs in{s, has_z, has_h0, has_bias, has_D, {}, {}, {}, {}, {}, {}, {}, {}, {}};
  const int64_t BTD = s.B * s.T * s.D, BTN = s.B * s.T * s.N;
  in.u = st::randn(BTD, seed);
  in.delta = st::randn(BTD, seed + 1, 0.5f);
  // Bias around softplus^-1 of 0.05..0.7: the range dt takes in a trained Mamba, exp(dt A) not ~0.
  in.bias = st::uniform(s.D, seed + 2, -3.0f, 0.0f);
  in.A = st::uniform(s.D * s.N, seed + 3, -2.0f, -0.2f);
  in.Bm = st::randn(BTN, seed + 4);
  in.Cm = st::randn(BTN, seed + 5);
  in.Ds = st::randn(s.D, seed + 6);
  in.z = st::randn(BTD, seed + 7);
  in.h0 = st::randn(s.B * s.D * s.N, seed + 8);
  return in;
}

double softplus_d(double x) { return x > 20 ? x : std::log1p(std::exp(x)); }
double silu_d(double x) { return x / (1.0 + std::exp(-x)); }

// selective_scan_ref in double. Empty vectors mean "absent" (z, h0, bias, Dskip).
void ref_scan(dvec& y, dvec& hlast, const dvec& u, const dvec& delta, const dvec& bias, const dvec& A, const dvec& Bm,
              const dvec& Cm, const dvec& Ds, const dvec& z, const dvec& h0, Shape4 s) {
  const int64_t B = s.B, T = s.T, D = s.D, N = s.N;
  y.assign(B * T * D, 0.0);
  hlast.assign(B * D * N, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t d = 0; d < D; ++d) {
      dvec h(N, 0.0);
      if (!h0.empty())
        for (int64_t n = 0; n < N; ++n) h[n] = h0[(b * D + d) * N + n];
      for (int64_t t = 0; t < T; ++t) {
        const int64_t i = (b * T + t) * D + d;
        const double dt = softplus_d(delta[i] + (bias.empty() ? 0.0 : bias[d]));
        double acc = 0;
        for (int64_t n = 0; n < N; ++n) {
          h[n] = std::exp(dt * A[d * N + n]) * h[n] + dt * Bm[(b * T + t) * N + n] * u[i];
          acc += Cm[(b * T + t) * N + n] * h[n];
        }
        acc += (Ds.empty() ? 0.0 : Ds[d]) * u[i];
        if (!z.empty()) acc *= silu_d(z[i]);
        y[i] = acc;
      }
      for (int64_t n = 0; n < N; ++n) hlast[(b * D + d) * N + n] = h[n];
    }
}

struct DInputs {
  dvec u, delta, bias, A, Bm, Cm, Ds, z, h0;
};
DInputs to_double(const Inputs& in) {
  DInputs d{st::to_double(in.u),
            st::to_double(in.delta),
            {},
            st::to_double(in.A),
            st::to_double(in.Bm),
            st::to_double(in.Cm),
            {},
            {},
            {}};
  if (in.has_bias) d.bias = st::to_double(in.bias);
  if (in.has_D) d.Ds = st::to_double(in.Ds);
  if (in.has_z) d.z = st::to_double(in.z);
  if (in.has_h0) d.h0 = st::to_double(in.h0);
  return d;
}

void run_forward(std::vector<float>& y, std::vector<float>& hlast, const Inputs& in) {
  const auto s = in.s;
  y.assign(s.B * s.T * s.D, 1e30f);
  hlast.assign(s.B * s.D * s.N, 1e30f);
  cpu::selective_scan_forward(y.data(), hlast.data(), in.u.data(), in.delta.data(),
                              in.has_bias ? in.bias.data() : nullptr, in.A.data(), in.Bm.data(), in.Cm.data(),
                              in.has_D ? in.Ds.data() : nullptr, in.has_z ? in.z.data() : nullptr,
                              in.has_h0 ? in.h0.data() : nullptr, s.B, s.T, s.D, s.N);
}

void check_forward(Shape4 s, bool z, bool h0, bool bias, bool D, uint64_t seed) {
  std::printf("scan forward B=%ld T=%ld D=%ld N=%ld z=%d h0=%d bias=%d D=%d\n", long(s.B), long(s.T), long(s.D),
              long(s.N), z, h0, bias, D);
  Inputs in = make_inputs(s, z, h0, bias, D, seed);
  std::vector<float> y, hl;
  run_forward(y, hl, in);
  DInputs d = to_double(in);
  dvec yr, hr;
  ref_scan(yr, hr, d.u, d.delta, d.bias, d.A, d.Bm, d.Cm, d.Ds, d.z, d.h0, s);
  expect_close(y, yr, 1e-5, 1e-4, "y");
  expect_close(hl, hr, 1e-5, 1e-4, "h_last");
}

// Central difference of f at indices idx of x.
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

// Every index, or `sample` random ones.
std::vector<size_t> pick(size_t n, int sample, uint64_t seed) {
  std::vector<size_t> idx;
  if (sample <= 0 || size_t(sample) >= n) {
    for (size_t i = 0; i < n; ++i) idx.push_back(i);
  } else {
    Rng r(seed);
    for (int k = 0; k < sample; ++k) idx.push_back(r.below(n));
  }
  return idx;
}

struct Grads {
  std::vector<float> du, ddelta, dA, dB, dC, dD, dbias, dz;
};

// Activation grads pre-filled with garbage (must be assigned), parameter grads with `base`
// (must be accumulated into).
Grads run_backward(const Inputs& in, const std::vector<float>& wl, const Grads& base) {
  const auto s = in.s;
  const int64_t BTD = s.B * s.T * s.D, BTN = s.B * s.T * s.N;
  Grads g = base;
  g.du.assign(BTD, 1e30f);
  g.ddelta.assign(BTD, 1e30f);
  g.dz.assign(BTD, 1e30f);
  g.dB.assign(BTN, 1e30f);
  g.dC.assign(BTN, 1e30f);
  cpu::selective_scan_backward(g.du.data(), g.ddelta.data(), g.dA.data(), g.dB.data(), g.dC.data(),
                               in.has_D ? g.dD.data() : nullptr, in.has_bias ? g.dbias.data() : nullptr,
                               in.has_z ? g.dz.data() : nullptr, wl.data(), in.u.data(), in.delta.data(),
                               in.has_bias ? in.bias.data() : nullptr, in.A.data(), in.Bm.data(), in.Cm.data(),
                               in.has_D ? in.Ds.data() : nullptr, in.has_z ? in.z.data() : nullptr, s.B, s.T, s.D, s.N);
  return g;
}

dvec gathered(const std::vector<float>& v, const std::vector<size_t>& idx, const std::vector<float>* base = nullptr) {
  dvec out;
  for (size_t i : idx) out.push_back(double(v[i]) - (base ? double((*base)[i]) : 0.0));
  return out;
}

// Backward vs FD of the double reference, on every input (or `sample` entries of each).
void check_backward(Shape4 s, bool z, bool bias, bool D, int sample, uint64_t seed) {
  std::printf("scan backward B=%ld T=%ld D=%ld N=%ld z=%d bias=%d D=%d\n", long(s.B), long(s.T), long(s.D), long(s.N),
              z, bias, D);
  Inputs in = make_inputs(s, z, false, bias, D, seed);
  auto wl = st::randn(s.B * s.T * s.D, seed + 20);
  Grads base;
  base.dA = st::randn(s.D * s.N, seed + 21);
  base.dD = st::randn(s.D, seed + 22);
  base.dbias = st::randn(s.D, seed + 23);
  Grads g = run_backward(in, wl, base);

  DInputs d = to_double(in);
  const dvec wld = st::to_double(wl);
  dvec yr, hr;
  auto loss = [&] {
    ref_scan(yr, hr, d.u, d.delta, d.bias, d.A, d.Bm, d.Cm, d.Ds, d.z, d.h0, s);
    double l = 0;
    for (size_t i = 0; i < yr.size(); ++i) l += yr[i] * wld[i];
    return l;
  };
  // Gradients that sum over many tokens are larger; the absolute tolerance grows with sqrt(T).
  const double at = 2e-5 * std::sqrt(double(s.T * s.B)), rt = 2e-3;
  auto check = [&](const char* what, dvec& x, const std::vector<float>& got, const std::vector<float>* b0,
                   uint64_t sd) {
    auto idx = pick(x.size(), sample, sd);
    expect_close(gathered(got, idx, b0), fd_at(x, idx, loss), at, rt, what);
  };
  check("du", d.u, g.du, nullptr, seed + 30);
  check("ddelta", d.delta, g.ddelta, nullptr, seed + 31);
  check("dA (accumulated)", d.A, g.dA, &base.dA, seed + 32);
  check("dBm", d.Bm, g.dB, nullptr, seed + 33);
  check("dCm", d.Cm, g.dC, nullptr, seed + 34);
  if (D) check("dDskip (accumulated)", d.Ds, g.dD, &base.dD, seed + 35);
  if (bias) check("ddelta_bias (accumulated)", d.bias, g.dbias, &base.dbias, seed + 36);
  if (z) check("dz", d.z, g.dz, nullptr, seed + 37);
}

}  // namespace

TEST(SelectiveScan, ForwardTinyAndOdd) {
  check_forward({1, 1, 1, 1}, false, false, false, false, 1);
  check_forward({2, 37, 21, 5}, true, true, true, true, 2);  // D: one full block + a tail
  check_forward({3, 50, 40, 16}, true, false, true, true, 3);
  check_forward({1, 9, 7, 3}, false, true, false, true, 4);  // D smaller than a block
}

TEST(SelectiveScan, ForwardLongSequenceStaysStable) {
  // Many tokens with dt*A down to -1.4 per step: the state decays and must neither blow up nor drift.
  check_forward({2, 400, 33, 16}, true, true, true, true, 5);
}

TEST(SelectiveScan, BackwardMatchesFiniteDifferences) {
  check_backward({2, 19, 18, 3}, true, true, true, 0, 10);   // T past one recompute chunk, D past a block
  check_backward({1, 5, 3, 2}, false, false, false, 0, 11);  // no z / bias / Dskip
  check_backward({3, 33, 5, 4}, true, true, true, 0, 12);    // T = 2 chunks + 1
}

TEST(SelectiveScan, BackwardChunkedRecompute) {
  // T * N past the kernel's whole-sequence budget: states are recomputed chunk by chunk from
  // checkpoints (T = 520 is not a multiple of the 16-token chunk).
  check_backward({1, 520, 5, 16}, true, true, true, 40, 14);
}

TEST(SelectiveScan, BackwardManyChannelGroups) {
  // D = 150: ten 16-channel blocks in two groups, so dB/dC go through the group partials.
  check_backward({2, 6, 150, 2}, true, true, true, 60, 13);
}

TEST(SelectiveScan, StepMatchesForward) {
  const Shape4 s{2, 23, 19, 6};
  for (bool z : {false, true}) {
    Inputs in = make_inputs(s, z, true, true, true, 40);
    std::vector<float> y, hl;
    run_forward(y, hl, in);
    std::vector<float> h = in.h0, ys(s.B * s.T * s.D), ut(s.B * s.D), dt(s.B * s.D), zt(s.B * s.D), bt(s.B * s.N),
                       ct(s.B * s.N), yt(s.B * s.D);
    for (int64_t t = 0; t < s.T; ++t) {
      for (int64_t b = 0; b < s.B; ++b) {
        for (int64_t d = 0; d < s.D; ++d) {
          const int64_t i = (b * s.T + t) * s.D + d;
          ut[b * s.D + d] = in.u[i];
          dt[b * s.D + d] = in.delta[i];
          zt[b * s.D + d] = in.z[i];
        }
        for (int64_t n = 0; n < s.N; ++n) {
          bt[b * s.N + n] = in.Bm[(b * s.T + t) * s.N + n];
          ct[b * s.N + n] = in.Cm[(b * s.T + t) * s.N + n];
        }
      }
      cpu::selective_scan_step(yt.data(), h.data(), ut.data(), dt.data(), in.bias.data(), in.A.data(), bt.data(),
                               ct.data(), in.Ds.data(), z ? zt.data() : nullptr, s.B, s.D, s.N);
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t d = 0; d < s.D; ++d) ys[(b * s.T + t) * s.D + d] = yt[b * s.D + d];
    }
    expect_close(ys, y, 1e-5, 1e-5, z ? "steps vs forward y (z)" : "steps vs forward y");
    expect_close(h, hl, 1e-5, 1e-5, "step state vs h_last");
  }
}

TEST(SelectiveScan, BackwardIndependentOfThreadCount) {
  const Shape4 s{3, 40, 150, 8};
  Inputs in = make_inputs(s, true, false, true, true, 50);
  auto wl = st::randn(s.B * s.T * s.D, 51);
  Grads base;
  base.dA.assign(s.D * s.N, 0.0f);
  base.dD.assign(s.D, 0.0f);
  base.dbias.assign(s.D, 0.0f);
  const int keep = omp_get_max_threads();
  omp_set_num_threads(1);
  Grads g1 = run_backward(in, wl, base);
  omp_set_num_threads(2);
  Grads g2 = run_backward(in, wl, base);
  omp_set_num_threads(keep);
  EXPECT_EQ(g1.du, g2.du);
  EXPECT_EQ(g1.ddelta, g2.ddelta);
  EXPECT_EQ(g1.dA, g2.dA);
  EXPECT_EQ(g1.dB, g2.dB);
  EXPECT_EQ(g1.dC, g2.dC);
  EXPECT_EQ(g1.dD, g2.dD);
  EXPECT_EQ(g1.dbias, g2.dbias);
  EXPECT_EQ(g1.dz, g2.dz);
}
