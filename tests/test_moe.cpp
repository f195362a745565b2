// MoE kernels: router softmax + top-k (ties, renorm), the Switch aux loss, the expert permutation,
// gather / combine / scatter-add. Forwards against double references written here; backwards
// against central finite differences of those references (loss = sum(w * out)).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/moe.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;
using st::expect_close;

namespace {

struct Route {
  std::vector<double> probs, gate;
  std::vector<int32_t> idx;
};

// logits[N, E] -> softmax, top-k by (prob desc, index asc), gates (renormalised or not), in double.
Route ref_route(const std::vector<double>& logits, int64_t N, int64_t E, int64_t k, bool renorm) {
  Route r;
  r.probs.resize(N * E);
  r.gate.resize(N * k);
  r.idx.resize(N * k);
  for (int64_t n = 0; n < N; ++n) {
    const double* l = &logits[n * E];
    double m = *std::max_element(l, l + E), s = 0;
    for (int64_t e = 0; e < E; ++e) s += std::exp(l[e] - m);
    for (int64_t e = 0; e < E; ++e) r.probs[n * E + e] = std::exp(l[e] - m) / s;
    std::vector<int32_t> order(E);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return r.probs[n * E + a] > r.probs[n * E + b]; });
    double gs = 0;
    for (int64_t j = 0; j < k; ++j) gs += r.probs[n * E + order[j]];
    for (int64_t j = 0; j < k; ++j) {
      r.idx[n * k + j] = order[j];
      r.gate[n * k + j] = r.probs[n * E + order[j]] / (renorm ? gs : 1.0);
    }
  }
  return r;
}

// E * sum_e f_e P_e with f from idx (held fixed) and P the mean of probs over tokens.
double ref_aux(const std::vector<double>& probs, const std::vector<int32_t>& idx, int64_t N, int64_t E, int64_t k) {
  double loss = 0;
  for (int64_t e = 0; e < E; ++e) {
    double cnt = 0, P = 0;
    for (int64_t i = 0; i < N * k; ++i) cnt += idx[i] == e;
    for (int64_t n = 0; n < N; ++n) P += probs[n * E + e];
    loss += cnt / double(N * k) * P / double(N);
  }
  return double(E) * loss;
}

std::vector<double> softmax_rows(const std::vector<double>& l, int64_t N, int64_t E) {
  return ref_route(l, N, E, 1, false).probs;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Central difference of f at every index of x.
std::vector<double> fd_all(std::vector<double>& x, const std::function<double()>& f, double h = 1e-6) {
  return st::finite_diff(x, f, h);
}

// A random top-k assignment per token (distinct experts), never using expert `unused`.
std::vector<int32_t> random_idx(int64_t N, int64_t E, int64_t k, int32_t unused, uint64_t seed) {
  Rng r(seed);
  std::vector<int32_t> idx(N * k);
  for (int64_t n = 0; n < N; ++n) {
    std::vector<int32_t> pool;
    for (int32_t e = 0; e < E; ++e)
      if (e != unused) pool.push_back(e);
    for (int64_t j = 0; j < k; ++j) {
      size_t p = r.below(pool.size());
      idx[n * k + j] = pool[p];
      pool.erase(pool.begin() + p);
    }
  }
  return idx;
}

void check_route(int64_t N, int64_t E, int64_t k, bool renorm, float scale, uint64_t seed) {
  std::printf("route N=%ld E=%ld k=%ld renorm=%d\n", long(N), long(E), long(k), int(renorm));
  auto logits = st::randn(N * E, seed, scale);
  std::vector<float> probs(N * E), gate(N * k);
  std::vector<int32_t> idx(N * k, -7);
  cpu::moe_route_forward(idx.data(), gate.data(), probs.data(), logits.data(), N, E, k, renorm);
  auto ld = st::to_double(logits);
  Route ref = ref_route(ld, N, E, k, renorm);
  expect_close(probs, ref.probs, 1e-7, 1e-5, "probs");
  expect_close(gate, ref.gate, 1e-7, 1e-5, "gate");
  EXPECT_EQ(idx, ref.idx);

  // loss = sum(wg * gate): FD through the softmax and top-k, skipping perturbations that change the
  // route (top-k is discontinuous there).
  auto wg = st::randn(N * k, seed + 1);
  std::vector<float> dl(N * E, 1e30f);  // must be assigned
  cpu::moe_route_backward(dl.data(), wg.data(), probs.data(), idx.data(), gate.data(), N, E, k, renorm);
  auto wgd = st::to_double(wg);
  std::vector<double> got, want;
  int skipped = 0;
  const double h = 1e-6;
  // Every entry on small shapes; a random sample on large ones (each FD costs a full pass).
  std::vector<int64_t> at;
  Rng pick(seed + 2);
  for (int64_t i = 0; i < N * E; ++i) at.push_back(N * E <= 1000 ? i : int64_t(pick.below(uint64_t(N * E))));
  if (N * E > 1000) at.resize(300);
  for (int64_t i : at) {
    const double keep = ld[i];
    ld[i] = keep + h;
    Route p = ref_route(ld, N, E, k, renorm);
    ld[i] = keep - h;
    Route m = ref_route(ld, N, E, k, renorm);
    ld[i] = keep;
    if (p.idx != ref.idx || m.idx != ref.idx) {
      ++skipped;
      continue;
    }
    got.push_back(dl[i]);
    want.push_back((dot(p.gate, wgd) - dot(m.gate, wgd)) / (2 * h));
  }
  std::printf("  route-changing perturbations skipped: %d of %zu\n", skipped, at.size());
  EXPECT_LT(skipped, int(at.size() / 10));
  expect_close(got, want, 1e-6, 1e-4, "dlogits vs FD");
}

}  // namespace

TEST(MoeRoute, ForwardBackwardSmall) {
  check_route(13, 7, 2, true, 2.0f, 1);
  check_route(13, 7, 2, false, 2.0f, 2);
  check_route(5, 4, 1, true, 1.0f, 3);  // k = 1 with renorm: gate == 1, gradient 0
  check_route(5, 4, 1, false, 1.0f, 4);
  check_route(9, 6, 3, false, 3.0f, 5);
  check_route(3, 5, 5, true, 1.0f, 6);  // k = E
}

TEST(MoeRoute, ThreadedPath) { check_route(3001, 8, 2, true, 2.0f, 7); }

TEST(MoeRoute, TiesPickLowerIndex) {
  // Rows with equal logits: order is by probability, then by index.
  const int64_t E = 5, k = 3, N = 3;
  std::vector<float> logits = {1, 3, 3, 0, 3,   // -> 1, 2, 4
                               2, 2, 2, 2, 2,   // -> 0, 1, 2
                               0, 5, 1, 5, 1};  // -> 1, 3, 2
  std::vector<float> probs(N * E), gate(N * k);
  std::vector<int32_t> idx(N * k);
  cpu::moe_route_forward(idx.data(), gate.data(), probs.data(), logits.data(), N, E, k, true);
  std::vector<int32_t> want = {1, 2, 4, 0, 1, 2, 1, 3, 2};
  EXPECT_EQ(idx, want);
  EXPECT_EQ(idx, ref_route(st::to_double(logits), N, E, k, true).idx);
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(gate[3 + j], 1.0 / 3.0, 1e-7);
}

TEST(MoeRoute, NonFiniteLogitsStillGiveDistinctValidExperts) {
  // A NaN router logit makes every probability of its row NaN. The picks must still be k distinct
  // experts in range (the permutation would otherwise refuse index -1 before any loss exists), and
  // the gates NaN, so the loss is non-finite and the trainer's guard skips the step.
  const int64_t E = 4, k = 2, N = 2;
  std::vector<float> logits = {0.5f, NAN, 1.0f, 0.0f,  //
                               1.0f, 2.0f, 0.0f, 3.0f};
  std::vector<float> probs(N * E), gate(N * k);
  std::vector<int32_t> idx(N * k, -7);
  cpu::moe_route_forward(idx.data(), gate.data(), probs.data(), logits.data(), N, E, k, true);
  EXPECT_EQ(idx[0], 0);
  EXPECT_EQ(idx[1], 1);
  EXPECT_TRUE(std::isnan(gate[0]) && std::isnan(gate[1]));
  EXPECT_EQ(idx[2], 3);  // the finite row is untouched
  EXPECT_EQ(idx[3], 1);
  EXPECT_TRUE(std::isfinite(gate[2]) && std::isfinite(gate[3]));
}

TEST(MoeRoute, RejectsBadTopK) {
  std::vector<float> l(8), p(8), g(8);
  std::vector<int32_t> i(8);
  EXPECT_THROW(cpu::moe_route_forward(i.data(), g.data(), p.data(), l.data(), 2, 4, 5, true), Error);
  EXPECT_THROW(cpu::moe_route_forward(i.data(), g.data(), p.data(), l.data(), 2, 4, 0, true), Error);
}

TEST(MoeAuxLoss, ForwardAndBackward) {
  for (auto [N, E, k] : {std::tuple<int64_t, int64_t, int64_t>{11, 6, 2}, {7, 4, 1}, {40, 8, 3}}) {
    std::printf("aux N=%ld E=%ld k=%ld\n", long(N), long(E), long(k));
    auto logits = st::randn(N * E, 100 + N, 1.5f);
    std::vector<float> probs(N * E), gate(N * k);
    std::vector<int32_t> idx(N * k);
    cpu::moe_route_forward(idx.data(), gate.data(), probs.data(), logits.data(), N, E, k, true);
    const float loss = cpu::moe_aux_loss_forward(probs.data(), idx.data(), N, E, k);
    const double want = ref_aux(st::to_double(probs), idx, N, E, k);
    expect_close(std::vector<float>{loss}, std::vector<double>{want}, 1e-7, 1e-6, "aux loss");

    // d(coef * aux)/dlogits with f fixed (the idx of the forward), accumulated into dlogits.
    const float coef = 0.37f;
    auto d0 = st::randn(N * E, 200 + N);
    auto dl = d0;
    cpu::moe_aux_loss_backward(dl.data(), probs.data(), idx.data(), coef, N, E, k);
    std::vector<double> got(N * E);
    for (int64_t i = 0; i < N * E; ++i) got[i] = double(dl[i]) - double(d0[i]);
    auto ld = st::to_double(logits);
    auto fd = fd_all(ld, [&] { return double(coef) * ref_aux(softmax_rows(ld, N, E), idx, N, E, k); });
    expect_close(got, fd, 1e-7, 1e-4, "dlogits (accumulated) vs FD");
  }
}

TEST(MoeAuxLoss, UniformRoutingGivesOne) {
  // The loss is 1 at perfect balance (f_e = P_e = 1/E): an independent anchor for the scaling.
  const int64_t N = 8, E = 4, k = 2;
  std::vector<float> probs(N * E, 0.25f);
  std::vector<int32_t> idx;
  for (int64_t n = 0; n < N; ++n) idx.push_back(int32_t(n % E)), idx.push_back(int32_t((n + 1) % E));
  EXPECT_NEAR(cpu::moe_aux_loss_forward(probs.data(), idx.data(), N, E, k), 1.0f, 1e-6f);
}

TEST(MoePermute, MatchesStableReference) {
  for (auto [N, E, k] : {std::tuple<int64_t, int64_t, int64_t>{50, 6, 2}, {1, 3, 1}, {17, 5, 3}, {0, 4, 2}}) {
    auto idx = random_idx(N, E, k, /*unused=*/E > 3 ? 3 : -1, 300 + N);
    std::vector<int32_t> offsets(E + 1, -1), row_token(N * k, -1), row_of(N * k, -1);
    cpu::moe_permute_indices(offsets.data(), row_token.data(), row_of.data(), idx.data(), N, E, k);
    // Reference: walk experts in order, then tokens, then slots.
    std::vector<int32_t> w_off = {0}, w_tok, w_of(N * k);
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t n = 0; n < N; ++n)
        for (int64_t j = 0; j < k; ++j)
          if (idx[n * k + j] == e) {
            w_of[n * k + j] = int32_t(w_tok.size());
            w_tok.push_back(int32_t(n));
          }
      w_off.push_back(int32_t(w_tok.size()));
    }
    EXPECT_EQ(offsets, w_off) << "N=" << N;
    EXPECT_EQ(row_token, w_tok) << "N=" << N;
    EXPECT_EQ(row_of, w_of) << "N=" << N;
    if (E > 3 && N > 0) {
      EXPECT_EQ(offsets[3], offsets[4]) << "expert 3 has no rows";
    }
  }
  std::vector<int32_t> bad = {0, 4}, o(5), t(2), f(2);
  EXPECT_THROW(cpu::moe_permute_indices(o.data(), t.data(), f.data(), bad.data(), 1, 4, 2), Error);
}

TEST(MoeRows, GatherCombineScatter) {
  const int64_t N = 9, E = 5, k = 2, D = 19, rows = N * k;
  auto idx = random_idx(N, E, k, 2, 400);
  std::vector<int32_t> offsets(E + 1), row_token(rows), row_of(rows);
  cpu::moe_permute_indices(offsets.data(), row_token.data(), row_of.data(), idx.data(), N, E, k);
  auto x = st::randn(N * D, 401);

  std::vector<float> xp(rows * D, 1e30f);
  cpu::moe_gather_rows(xp.data(), x.data(), row_token.data(), rows, D);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < k; ++j)
      for (int64_t d = 0; d < D; ++d) ASSERT_EQ(xp[row_of[n * k + j] * D + d], x[n * D + d]);

  // combine: y[n] = sum_j gate[n, j] yp[row_of[n k + j]]
  auto yp = st::randn(rows * D, 402), gate = st::uniform(N * k, 403, 0.1f, 1.0f), w = st::randn(N * D, 404);
  auto ypd = st::to_double(yp), gd = st::to_double(gate), wd = st::to_double(w);
  std::vector<double> yref(N * D);
  auto fwd = [&] {
    std::fill(yref.begin(), yref.end(), 0.0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t j = 0; j < k; ++j)
        for (int64_t d = 0; d < D; ++d) yref[n * D + d] += gd[n * k + j] * ypd[row_of[n * k + j] * D + d];
    return dot(yref, wd);
  };
  fwd();
  std::vector<float> y(N * D, 1e30f);
  cpu::moe_combine_forward(y.data(), yp.data(), gate.data(), row_of.data(), N, k, D);
  expect_close(y, yref, 1e-6, 1e-5, "combine y");

  std::vector<float> dyp(rows * D, 1e30f), dgate(N * k, 1e30f);  // both assigned
  cpu::moe_combine_backward(dyp.data(), dgate.data(), w.data(), yp.data(), gate.data(), row_of.data(), N, k, D);
  expect_close(dyp, fd_all(ypd, fwd), 1e-6, 1e-5, "dyp vs FD");
  expect_close(dgate, fd_all(gd, fwd), 1e-6, 1e-5, "dgate vs FD");

  // scatter-add is the adjoint of gather: FD of loss = sum(v * gather(x)) wrt x, accumulated.
  auto v = st::randn(rows * D, 405);
  auto vd = st::to_double(v), xd = st::to_double(x);
  auto gather_loss = [&] {
    double s = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t d = 0; d < D; ++d) s += vd[r * D + d] * xd[row_token[r] * D + d];
    return s;
  };
  auto dx0 = st::randn(N * D, 406);
  auto dx = dx0;
  cpu::moe_scatter_add_rows(dx.data(), v.data(), row_token.data(), rows, D);
  std::vector<double> got(N * D);
  for (int64_t i = 0; i < N * D; ++i) got[i] = double(dx[i]) - double(dx0[i]);
  expect_close(got, fd_all(xd, gather_loss), 1e-5, 1e-5, "scatter-add (accumulated) vs FD");
}

TEST(MoeRows, ScatterAddThreadedAndIndependentOfThreadCount) {
  // D = 130: two full 64-column blocks and a partial one; rows * D above the threading threshold.
  const int64_t N = 301, E = 7, k = 2, D = 130, rows = N * k;
  auto idx = random_idx(N, E, k, -1, 500);
  std::vector<int32_t> offsets(E + 1), row_token(rows), row_of(rows);
  cpu::moe_permute_indices(offsets.data(), row_token.data(), row_of.data(), idx.data(), N, E, k);
  auto v = st::randn(rows * D, 501), dx0 = st::randn(N * D, 502);
  std::vector<double> ref(dx0.begin(), dx0.end());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t d = 0; d < D; ++d) ref[row_token[r] * D + d] += v[r * D + d];
  const int threads = omp_get_max_threads();
  std::vector<std::vector<float>> out;
  for (int t : {1, 2}) {
    omp_set_num_threads(t);
    auto dx = dx0;
    cpu::moe_scatter_add_rows(dx.data(), v.data(), row_token.data(), rows, D);
    expect_close(dx, ref, 1e-5, 1e-5, "scatter-add threads=" + std::to_string(t));
    out.push_back(dx);
  }
  omp_set_num_threads(threads);
  EXPECT_EQ(out[0], out[1]) << "result depends on the thread count";

  // The combine pair on the threaded path too.
  auto yp = st::randn(rows * D, 503), gate = st::uniform(N * k, 504, 0.1f, 1.0f), dy = st::randn(N * D, 505);
  std::vector<double> yref(N * D, 0.0), dgref(N * k, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < k; ++j)
      for (int64_t d = 0; d < D; ++d) {
        yref[n * D + d] += double(gate[n * k + j]) * yp[row_of[n * k + j] * D + d];
        dgref[n * k + j] += double(dy[n * D + d]) * yp[row_of[n * k + j] * D + d];
      }
  std::vector<float> y(N * D), dyp(rows * D), dg(N * k);
  cpu::moe_combine_forward(y.data(), yp.data(), gate.data(), row_of.data(), N, k, D);
  cpu::moe_combine_backward(dyp.data(), dg.data(), dy.data(), yp.data(), gate.data(), row_of.data(), N, k, D);
  expect_close(y, yref, 1e-5, 1e-5, "combine y (threaded)");
  expect_close(dg, dgref, 1e-4, 1e-5, "combine dgate (threaded)");
}
