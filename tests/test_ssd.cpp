// Mamba-2 SSD kernels against a double-precision reference of the plain recurrence (not the chunked
// form): forward (with and without s0, s_last) for several chunk sizes, T not a multiple of the
// chunk, G = 1 and 2; the step kernel token by token; the backward against central finite
// differences of the reference; and a backward independent of the thread count.
#include <omp.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/ssd.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;
using st::expect_close;

namespace {

struct Shape5 {
  int64_t B, T, H, P, G, N;
};

// All inputs of one problem, in double for the reference; the kernel gets fp32 copies.
struct Problem {
  Shape5 s;
  std::vector<double> x, dt_raw, dt_bias, A, Bm, Cm, D, s0;
  Problem(Shape5 sh, uint64_t seed, bool with_s0) : s(sh) {
    const auto [B, T, H, P, G, N] = sh;
    x = st::to_double(st::randn(B * T * H * P, seed));
    dt_raw = st::to_double(st::randn(B * T * H, seed + 1, 0.7f));
    // dt = softplus(dt_raw + bias) roughly in [0.05, 1.5], A in [-3, -0.3]: decays e^{dt A} from
    // ~0.01 to ~0.98, so both short and long memory are exercised.
    dt_bias = st::to_double(st::uniform(H, seed + 2, -2.5f, 0.5f));
    A = st::to_double(st::uniform(H, seed + 3, -3.0f, -0.3f));
    Bm = st::to_double(st::randn(B * T * G * N, seed + 4));
    Cm = st::to_double(st::randn(B * T * G * N, seed + 5));
    D = st::to_double(st::randn(H, seed + 6));
    if (with_s0) s0 = st::to_double(st::randn(B * H * P * N, seed + 7));
  }
};

std::vector<float> f32(const std::vector<double>& v) { return {v.begin(), v.end()}; }

// The recurrence, token by token, in double:  S = e^{dt A} S + dt x B^T;  y = S C + D x.
void ref_ssd(std::vector<double>& y, std::vector<double>& s_last, const Problem& pr) {
  const auto [B, T, H, P, G, N] = pr.s;
  const int64_t hpg = H / G;
  y.assign(B * T * H * P, 0.0);
  s_last.assign(B * H * P * N, 0.0);
  std::vector<double> S(P * N);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / hpg;
      for (int64_t i = 0; i < P * N; ++i) S[i] = pr.s0.empty() ? 0.0 : pr.s0[(b * H + h) * P * N + i];
      for (int64_t t = 0; t < T; ++t) {
        const double u = pr.dt_raw[(b * T + t) * H + h] + pr.dt_bias[h];
        const double dt = u > 20 ? u : std::log1p(std::exp(u));
        const double a = std::exp(dt * pr.A[h]);
        const double* Bv = &pr.Bm[((b * T + t) * G + g) * N];
        const double* Cv = &pr.Cm[((b * T + t) * G + g) * N];
        for (int64_t p = 0; p < P; ++p) {
          const double xv = pr.x[((b * T + t) * H + h) * P + p];
          double acc = 0;
          for (int64_t n = 0; n < N; ++n) {
            double& s = S[p * N + n];
            s = a * s + dt * xv * Bv[n];
            acc += s * Cv[n];
          }
          y[((b * T + t) * H + h) * P + p] = acc + pr.D[h] * xv;
        }
      }
      for (int64_t i = 0; i < P * N; ++i) s_last[(b * H + h) * P * N + i] = S[i];
    }
}

// Forward of the kernel on the fp32 copies.
void run_forward(std::vector<float>& y, std::vector<float>* s_last, const Problem& pr, int64_t chunk) {
  const auto [B, T, H, P, G, N] = pr.s;
  auto x = f32(pr.x), dtr = f32(pr.dt_raw), db = f32(pr.dt_bias), A = f32(pr.A), Bm = f32(pr.Bm), Cm = f32(pr.Cm),
       D = f32(pr.D), s0 = f32(pr.s0);
  y.assign(B * T * H * P, 1e30f);
  if (s_last) s_last->assign(B * H * P * N, 1e30f);
  cpu::ssd_forward(y.data(), s_last ? s_last->data() : nullptr, x.data(), dtr.data(), db.data(), A.data(), Bm.data(),
                   Cm.data(), D.data(), s0.empty() ? nullptr : s0.data(), B, T, H, P, G, N, chunk);
}

void check_forward(Shape5 sh, int64_t chunk, bool with_s0, uint64_t seed) {
  std::printf("ssd_forward B=%ld T=%ld H=%ld P=%ld G=%ld N=%ld chunk=%ld s0=%d\n", long(sh.B), long(sh.T),
              long(sh.H), long(sh.P), long(sh.G), long(sh.N), long(chunk), int(with_s0));
  Problem pr(sh, seed, with_s0);
  std::vector<double> yr, sr;
  ref_ssd(yr, sr, pr);
  std::vector<float> y, s;
  run_forward(y, &s, pr, chunk);
  expect_close(y, yr, 2e-4, 1e-3, "y");
  expect_close(s, sr, 2e-4, 1e-3, "s_last");
  // Without s_last the outputs are the same.
  std::vector<float> y2;
  run_forward(y2, nullptr, pr, chunk);
  expect_close(y2, y, 0, 0, "y (no s_last) == y");
}

// All kernel gradients of loss = sum(w o y) against central differences of the double reference,
// at `samples` random entries of each input (all entries when samples <= 0).
void check_backward(Shape5 sh, int64_t chunk, int samples, uint64_t seed) {
  const auto [B, T, H, P, G, N] = sh;
  std::printf("ssd_backward B=%ld T=%ld H=%ld P=%ld G=%ld N=%ld chunk=%ld\n", long(B), long(T), long(H), long(P),
              long(G), long(N), long(chunk));
  Problem pr(sh, seed, false);
  auto wl = st::to_double(st::randn(B * T * H * P, seed + 10));
  auto dy = f32(wl);
  auto x = f32(pr.x), dtr = f32(pr.dt_raw), db = f32(pr.dt_bias), A = f32(pr.A), Bm = f32(pr.Bm), Cm = f32(pr.Cm),
       D = f32(pr.D);
  // Activation grads pre-filled with garbage (must be assigned), head grads random (accumulated).
  std::vector<float> dx(x.size(), 1e30f), ddt(dtr.size(), 1e30f), dB(Bm.size(), 1e30f), dC(Cm.size(), 1e30f);
  auto dA0 = st::randn(H, seed + 11), dD0 = st::randn(H, seed + 12), dbias0 = st::randn(H, seed + 13);
  auto dA = dA0, dD = dD0, dbias = dbias0;
  cpu::ssd_backward(dx.data(), ddt.data(), dA.data(), dB.data(), dC.data(), dD.data(), dbias.data(), dy.data(),
                    x.data(), dtr.data(), db.data(), A.data(), Bm.data(), Cm.data(), D.data(), B, T, H, P, G, N,
                    chunk);
  std::vector<double> yr, sr;
  auto loss = [&] {
    ref_ssd(yr, sr, pr);
    double l = 0;
    for (size_t i = 0; i < yr.size(); ++i) l += wl[i] * yr[i];
    return l;
  };
  Rng pick(seed + 14);
  auto check = [&](const char* what, std::vector<double>& v, const std::vector<float>& got,
                   const std::vector<float>& before) {
    std::vector<size_t> idx;
    if (samples <= 0 || size_t(samples) >= v.size())
      for (size_t i = 0; i < v.size(); ++i) idx.push_back(i);
    else
      for (int k = 0; k < samples; ++k) idx.push_back(size_t(pick.below(v.size())));
    std::vector<double> g, fd;
    const double h = 1e-6;
    for (size_t i : idx) {
      g.push_back(double(got[i]) - (before.empty() ? 0.0 : double(before[i])));
      const double keep = v[i];
      v[i] = keep + h;
      const double lp = loss();
      v[i] = keep - h;
      const double lm = loss();
      v[i] = keep;
      fd.push_back((lp - lm) / (2 * h));
    }
    expect_close(g, fd, 2e-4, 2e-3, what);
  };
  check("dx", pr.x, dx, {});
  check("ddt_raw", pr.dt_raw, ddt, {});
  check("dBm", pr.Bm, dB, {});
  check("dCm", pr.Cm, dC, {});
  check("dA (accumulated)", pr.A, dA, dA0);
  check("dD (accumulated)", pr.D, dD, dD0);
  check("ddt_bias (accumulated)", pr.dt_bias, dbias, dbias0);
}

}  // namespace

TEST(Ssd, ForwardMatchesRecurrence) {
  // T = 37 / 100 against chunks 8, 16, 64: ragged last chunks and a chunk longer than T.
  for (int64_t chunk : {8, 16, 64}) {
    check_forward({2, 37, 4, 8, 1, 16}, chunk, false, 10 + chunk);
    check_forward({2, 100, 4, 8, 2, 16}, chunk, false, 20 + chunk);
  }
  check_forward({1, 100, 6, 4, 3, 8}, 16, false, 30);  // B = 1: several head slices per group
  check_forward({3, 13, 2, 5, 1, 7}, 1, false, 31);    // chunk 1 is the recurrence itself
  check_forward({2, 1, 4, 3, 2, 5}, 8, false, 32);     // one token
}

// Large, uneven decays (as a Mamba-2 with big activations gets): now and then dt jumps to ~40, a step
// of dt A down to -120, so cum reaches the -100s inside a chunk while the steps in between stay
// O(0.1). The decay between nearby tokens must keep its relative precision there; computed as
// e^{cum_i - cum_j} it carries cum's rounding (~1e-5 absolute) and y drifts by ~1e-4 relative.
TEST(Ssd, ForwardPreciseWithLargeCumulativeDecay) {
  const Shape5 sh{2, 100, 4, 8, 2, 16};
  for (int64_t chunk : {64, 16}) {
    Problem pr(sh, 90 + uint64_t(chunk), true);
    Rng r(91);
    for (double& v : pr.dt_raw)
      if (r.uniform() < 0.1f) v = 40.0;
    std::vector<double> yr, sr;
    ref_ssd(yr, sr, pr);
    std::vector<float> y, s;
    run_forward(y, &s, pr, chunk);
    expect_close(y, yr, 2e-5, 2e-5, "y");
    expect_close(s, sr, 2e-5, 2e-5, "s_last");
  }
}

TEST(Ssd, ForwardWithInitialState) {
  check_forward({2, 37, 4, 8, 2, 16}, 16, true, 40);
  check_forward({1, 5, 2, 4, 1, 6}, 8, true, 41);
  check_forward({2, 0, 2, 4, 1, 6}, 8, true, 42);  // T = 0 passes s0 through
}

TEST(Ssd, StepMatchesRecurrence) {
  const Shape5 sh{2, 23, 4, 8, 2, 16};
  const auto [B, T, H, P, G, N] = sh;
  Problem pr(sh, 50, true);
  std::vector<double> yr, sr;
  ref_ssd(yr, sr, pr);
  auto state = f32(pr.s0);
  auto db = f32(pr.dt_bias), A = f32(pr.A), D = f32(pr.D);
  std::vector<float> y(B * T * H * P), xt(B * H * P), dtt(B * H), Bt(B * G * N), Ct(B * G * N), yt(B * H * P);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t i = 0; i < H * P; ++i) xt[b * H * P + i] = float(pr.x[(b * T + t) * H * P + i]);
      for (int64_t i = 0; i < H; ++i) dtt[b * H + i] = float(pr.dt_raw[(b * T + t) * H + i]);
      for (int64_t i = 0; i < G * N; ++i) {
        Bt[b * G * N + i] = float(pr.Bm[(b * T + t) * G * N + i]);
        Ct[b * G * N + i] = float(pr.Cm[(b * T + t) * G * N + i]);
      }
    }
    cpu::ssd_step(yt.data(), state.data(), xt.data(), dtt.data(), db.data(), A.data(), Bt.data(), Ct.data(), D.data(),
                  B, H, P, G, N);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < H * P; ++i) y[(b * T + t) * H * P + i] = yt[b * H * P + i];
  }
  expect_close(y, yr, 2e-4, 1e-3, "step y");
  expect_close(state, sr, 2e-4, 1e-3, "step state");
}

TEST(Ssd, BackwardMatchesFiniteDifferences) {
  // Every entry of every input, on shapes small enough for that.
  check_backward({2, 11, 4, 3, 2, 5}, 4, 0, 60);  // ragged last chunk, G = 2
  check_backward({1, 9, 2, 4, 1, 3}, 16, 0, 61);  // one chunk longer than T, G = 1, 2 head slices
  check_backward({2, 7, 2, 2, 1, 3}, 1, 0, 62);   // chunk 1
  check_backward({1, 20, 5, 3, 1, 4}, 8, 0, 63);  // 5 heads of one group, one per slice
  check_backward({3, 10, 6, 2, 2, 3}, 4, 0, 64);  // 3 heads per group over 2 slices: uneven split
}

TEST(Ssd, EmptySequence) {
  // T = 0: nothing to write, and the accumulated head grads stay as they were.
  const int64_t H = 2, P = 3, G = 1, N = 4;
  std::vector<float> one(H, 1.0f), dA(H, 0.5f), dD(H, 0.25f), db(H, 0.125f);
  cpu::ssd_backward(nullptr, nullptr, dA.data(), nullptr, nullptr, dD.data(), db.data(), nullptr, nullptr, nullptr,
                    one.data(), one.data(), nullptr, nullptr, one.data(), 2, 0, H, P, G, N, 8);
  EXPECT_EQ(dA, std::vector<float>(H, 0.5f));
  EXPECT_EQ(dD, std::vector<float>(H, 0.25f));
  EXPECT_EQ(db, std::vector<float>(H, 0.125f));
}

TEST(Ssd, BackwardMatchesFiniteDifferencesLonger) {
  // T = 100 over chunks of 16 (many state passes) and 64 (ragged), sampled entries.
  check_backward({2, 100, 4, 8, 2, 16}, 16, 25, 70);
  check_backward({1, 100, 4, 8, 1, 16}, 64, 25, 71);
}

TEST(Ssd, BackwardIndependentOfThreadCount) {
  const Shape5 sh{1, 150, 8, 16, 2, 32};  // several head slices per group
  const auto [B, T, H, P, G, N] = sh;
  Problem pr(sh, 80, false);
  auto x = f32(pr.x), dtr = f32(pr.dt_raw), db = f32(pr.dt_bias), A = f32(pr.A), Bm = f32(pr.Bm), Cm = f32(pr.Cm),
       D = f32(pr.D);
  auto dy = st::randn(x.size(), 81);
  struct Out {
    std::vector<float> dx, ddt, dB, dC, dA, dD, dbias;
  };
  auto run = [&](int threads) {
    Out o{std::vector<float>(x.size()), std::vector<float>(dtr.size()), std::vector<float>(Bm.size()),
          std::vector<float>(Cm.size()), std::vector<float>(H), std::vector<float>(H), std::vector<float>(H)};
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    cpu::ssd_backward(o.dx.data(), o.ddt.data(), o.dA.data(), o.dB.data(), o.dC.data(), o.dD.data(), o.dbias.data(),
                      dy.data(), x.data(), dtr.data(), db.data(), A.data(), Bm.data(), Cm.data(), D.data(), B, T, H, P,
                      G, N, 32);
    omp_set_num_threads(saved);
    return o;
  };
  Out a = run(1), b = run(2);
  EXPECT_EQ(a.dx, b.dx);
  EXPECT_EQ(a.ddt, b.ddt);
  EXPECT_EQ(a.dB, b.dB);
  EXPECT_EQ(a.dC, b.dC);
  EXPECT_EQ(a.dA, b.dA);
  EXPECT_EQ(a.dD, b.dD);
  EXPECT_EQ(a.dbias, b.dbias);
}
