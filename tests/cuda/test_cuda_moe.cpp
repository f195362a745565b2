// CUDA MoE kernels vs their CPU twins: routing (softmax + top-k with ties, renorm on / off, E above
// and below the warp width) and its backward, the aux loss and its gradient, the expert permutation
// (stable, exact; a bad index throws), gather / combine / scatter-add, and the grouped expert
// linear (forward, dinp, dW; idle experts, several row tiles per expert). Skips visibly without a
// device. fp32 tolerances: 1e-6 abs + 1e-5 rel on probabilities and gates (sums in another order),
// exact equality for indices and permutations, 1e-5 rel on the loss; gathers and scatter-adds are
// exact (same values, same summation order as the CPU); grouped products 1e-5 of their scale.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "core/device_cuda.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/cpu/moe.h"
#include "kernels/cuda/moe.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;

namespace {

#define SKIP_WITHOUT_DEVICE() \
  if (!cuda::device_available()) GTEST_SKIP() << cuda::unavailable_reason()

// A device copy of a host vector (or zeroed storage), freed on scope exit.
template <class T>
struct DevVec {
  T* p = nullptr;
  size_t n = 0;
  explicit DevVec(size_t n_) : p(static_cast<T*>(cuda::alloc(n_ * sizeof(T)))), n(n_) {
    cuda::memset_zero(p, n * sizeof(T));
  }
  explicit DevVec(const std::vector<T>& h) : DevVec(h.size()) { cuda::copy_to_device(p, h.data(), n * sizeof(T)); }
  DevVec(const DevVec&) = delete;
  DevVec& operator=(const DevVec&) = delete;
  ~DevVec() { cuda::free(p); }
  std::vector<T> host() const {
    std::vector<T> h(n);
    cuda::copy_to_host(h.data(), p, n * sizeof(T));
    return h;
  }
};

// Logits with deliberate ties: every third row repeats a value across several experts.
std::vector<float> tied_logits(int64_t N, int64_t E, uint64_t seed) {
  auto l = st::randn(static_cast<size_t>(N * E), seed, 2.0f);
  for (int64_t n = 0; n < N; n += 3)
    for (int64_t e = 0; e < E; e += 2) l[static_cast<size_t>(n * E + e)] = 0.5f;
  return l;
}

// A random top-k assignment per token (distinct experts).
std::vector<int32_t> random_idx(int64_t N, int64_t E, int64_t k, uint64_t seed) {
  Rng r(seed);
  std::vector<int32_t> idx(static_cast<size_t>(N * k));
  for (int64_t n = 0; n < N; ++n) {
    std::vector<int32_t> pool(static_cast<size_t>(E));
    std::iota(pool.begin(), pool.end(), 0);
    for (int64_t j = 0; j < k; ++j) {
      const size_t p = r.below(pool.size());
      idx[static_cast<size_t>(n * k + j)] = pool[p];
      pool.erase(pool.begin() + long(p));
    }
  }
  return idx;
}

struct RouteCase {
  int64_t N, E, k;
  bool renorm;
};

TEST(CudaMoe, RouteForwardBackwardMatchCpu) {
  SKIP_WITHOUT_DEVICE();
  for (const RouteCase c : {RouteCase{37, 8, 2, true}, RouteCase{50, 8, 2, false}, RouteCase{19, 64, 6, true},
                            RouteCase{9, 70, 3, false}, RouteCase{5, 3, 3, true}, RouteCase{11, 1, 1, false}}) {
    std::printf("route N=%ld E=%ld k=%ld renorm=%d\n", long(c.N), long(c.E), long(c.k), int(c.renorm));
    const auto logits = tied_logits(c.N, c.E, 900);
    const size_t ne = static_cast<size_t>(c.N * c.E), nk = static_cast<size_t>(c.N * c.k);
    std::vector<float> probs(ne), gate(nk);
    std::vector<int32_t> idx(nk);
    cpu::moe_route_forward(idx.data(), gate.data(), probs.data(), logits.data(), c.N, c.E, c.k, c.renorm);
    DevVec<float> gl(logits), gp(ne), gg(nk);
    DevVec<int32_t> gi(nk);
    cuda::moe_route_forward(gi.p, gg.p, gp.p, gl.p, c.N, c.E, c.k, c.renorm);
    st::expect_close(gp.host(), probs, 1e-6, 1e-5, "probs");
    st::expect_close(gg.host(), gate, 1e-6, 1e-5, "gate");
    EXPECT_EQ(gi.host(), idx) << "top-k indices (ties -> lower index)";

    // Backward on the CPU's routing, so both see the same picks.
    const auto dgate = st::randn(nk, 901);
    std::vector<float> dl(ne);
    cpu::moe_route_backward(dl.data(), dgate.data(), probs.data(), idx.data(), gate.data(), c.N, c.E, c.k, c.renorm);
    DevVec<float> gdg(dgate), gdl(ne), gp2(probs), gg2(gate);
    DevVec<int32_t> gi2(idx);
    cuda::moe_route_backward(gdl.p, gdg.p, gp2.p, gi2.p, gg2.p, c.N, c.E, c.k, c.renorm);
    st::expect_close(gdl.host(), dl, 1e-6, 1e-5, "dlogits");
  }
}

TEST(CudaMoe, RouteWithNonFiniteLogitsPicksValidExpertsAsCpu) {
  SKIP_WITHOUT_DEVICE();
  // Rows with a NaN or infinite logit have only NaN probabilities: both twins pick experts 0..k-1
  // with NaN gates (the trainer's non-finite guard then skips the step), finite rows as usual.
  const int64_t N = 4, E = 6, k = 3;
  std::vector<float> logits = st::randn(static_cast<size_t>(N * E), 905);
  logits[1 * E + 2] = NAN;
  logits[3 * E + 5] = INFINITY;
  const size_t ne = static_cast<size_t>(N * E), nk = static_cast<size_t>(N * k);
  std::vector<float> probs(ne), gate(nk);
  std::vector<int32_t> idx(nk);
  cpu::moe_route_forward(idx.data(), gate.data(), probs.data(), logits.data(), N, E, k, true);
  DevVec<float> gl(logits), gp(ne), gg(nk);
  DevVec<int32_t> gi(nk);
  cuda::moe_route_forward(gi.p, gg.p, gp.p, gl.p, N, E, k, true);
  EXPECT_EQ(gi.host(), idx);
  const auto g = gg.host();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < k; ++j) {
      const size_t i = static_cast<size_t>(n * k + j);
      const bool bad_row = n == 1 || n == 3;
      EXPECT_EQ(std::isnan(g[i]), bad_row) << "row " << n << " pick " << j;
      EXPECT_EQ(std::isnan(gate[i]), bad_row) << "cpu row " << n << " pick " << j;
      if (bad_row) EXPECT_EQ(idx[i], j);
    }
}

TEST(CudaMoe, AuxLossMatchesCpu) {
  SKIP_WITHOUT_DEVICE();
  for (const RouteCase c : {RouteCase{300, 8, 2, true}, RouteCase{1000, 40, 3, true}, RouteCase{7, 5, 1, true}}) {
    std::printf("aux loss N=%ld E=%ld k=%ld\n", long(c.N), long(c.E), long(c.k));
    const auto logits = st::randn(static_cast<size_t>(c.N * c.E), 910);
    std::vector<float> probs(static_cast<size_t>(c.N * c.E)), gate(static_cast<size_t>(c.N * c.k));
    std::vector<int32_t> idx(static_cast<size_t>(c.N * c.k));
    cpu::moe_route_forward(idx.data(), gate.data(), probs.data(), logits.data(), c.N, c.E, c.k, true);
    const float loss = cpu::moe_aux_loss_forward(probs.data(), idx.data(), c.N, c.E, c.k);
    DevVec<float> gp(probs);
    DevVec<int32_t> gi(idx);
    const float gloss = cuda::moe_aux_loss_forward(gp.p, gi.p, c.N, c.E, c.k);
    std::printf("  loss cpu=%.8f cuda=%.8f\n", loss, gloss);
    EXPECT_NEAR(gloss, loss, 1e-5 * std::abs(loss));

    auto dl = st::randn(static_cast<size_t>(c.N * c.E), 911);  // accumulated into
    DevVec<float> gdl(dl);
    cpu::moe_aux_loss_backward(dl.data(), probs.data(), idx.data(), 0.37f, c.N, c.E, c.k);
    cuda::moe_aux_loss_backward(gdl.p, gp.p, gi.p, 0.37f, c.N, c.E, c.k);
    st::expect_close(gdl.host(), dl, 1e-6, 1e-5, "dlogits (accumulated)");
  }
}

TEST(CudaMoe, PermuteGatherCombineScatterMatchCpu) {
  SKIP_WITHOUT_DEVICE();
  for (const RouteCase c : {RouteCase{200, 8, 2, true}, RouteCase{33, 5, 5, true}, RouteCase{3000, 64, 4, true},
                            RouteCase{1, 1, 1, true}}) {
    const int64_t N = c.N, E = c.E, k = c.k, rows = N * k, D = 45;
    std::printf("permute/gather/combine/scatter N=%ld E=%ld k=%ld D=%ld\n", long(N), long(E), long(k), long(D));
    const auto idx = random_idx(N, E, k, 920);
    std::vector<int32_t> off(static_cast<size_t>(E + 1)), rt(static_cast<size_t>(rows)), ro(static_cast<size_t>(rows));
    cpu::moe_permute_indices(off.data(), rt.data(), ro.data(), idx.data(), N, E, k);
    DevVec<int32_t> gidx(idx), goff(static_cast<size_t>(E + 1)), grt(static_cast<size_t>(rows)), gro(static_cast<size_t>(rows));
    cuda::moe_permute_indices(goff.p, grt.p, gro.p, gidx.p, N, E, k);
    EXPECT_EQ(goff.host(), off) << "offsets";
    EXPECT_EQ(grt.host(), rt) << "row_token";
    EXPECT_EQ(gro.host(), ro) << "row_of";

    const auto x = st::randn(static_cast<size_t>(N * D), 921), yp = st::randn(static_cast<size_t>(rows * D), 922),
               gate = st::randn(static_cast<size_t>(rows), 923), dy = st::randn(static_cast<size_t>(N * D), 924),
               dxp = st::randn(static_cast<size_t>(rows * D), 925);
    std::vector<float> xp(static_cast<size_t>(rows * D)), y(static_cast<size_t>(N * D)), dyp(static_cast<size_t>(rows * D)), dgate(static_cast<size_t>(rows));
    auto dx = st::randn(static_cast<size_t>(N * D), 926);  // accumulated into
    DevVec<float> gx(x), gyp(yp), ggate(gate), gdy(dy), gdxp(dxp), gxp(xp.size()), gy(y.size()), gdyp(dyp.size()),
        gdgate(dgate.size()), gdx(dx);
    cpu::moe_gather_rows(xp.data(), x.data(), rt.data(), rows, D);
    cuda::moe_gather_rows(gxp.p, gx.p, grt.p, rows, D);
    st::expect_close(gxp.host(), xp, 0, 0, "gather");
    cpu::moe_combine_forward(y.data(), yp.data(), gate.data(), ro.data(), N, k, D);
    cuda::moe_combine_forward(gy.p, gyp.p, ggate.p, gro.p, N, k, D);
    st::expect_close(gy.host(), y, 1e-6, 1e-6, "combine");
    cpu::moe_combine_backward(dyp.data(), dgate.data(), dy.data(), yp.data(), gate.data(), ro.data(), N, k, D);
    cuda::moe_combine_backward(gdyp.p, gdgate.p, gdy.p, gyp.p, ggate.p, gro.p, N, k, D);
    st::expect_close(gdyp.host(), dyp, 0, 0, "combine backward dyp");
    st::expect_close(gdgate.host(), dgate, 1e-5, 1e-5, "combine backward dgate");
    cpu::moe_scatter_add_rows(dx.data(), dxp.data(), rt.data(), rows, D);
    cuda::moe_scatter_add_rows(gdx.p, gdxp.p, grt.p, rows, D);
    st::expect_close(gdx.host(), dx, 0, 0, "scatter-add (same order: exact)");
  }
}

TEST(CudaMoe, ScatterAddAnyRowTokens) {
  SKIP_WITHOUT_DEVICE();
  // Tokens hit by 0..5 rows in no particular order (the contract is not limited to permutations).
  const int64_t N = 13, rows = 40, D = 7;
  Rng r(930);
  std::vector<int32_t> rt(static_cast<size_t>(rows));
  for (auto& t : rt) t = int32_t(r.below(uint64_t(N - 3)));
  const auto dxp = st::randn(static_cast<size_t>(rows * D), 931);
  auto dx = st::randn(static_cast<size_t>(N * D), 932);
  DevVec<float> gdx(dx), gdxp(dxp);
  DevVec<int32_t> grt(rt);
  cpu::moe_scatter_add_rows(dx.data(), dxp.data(), rt.data(), rows, D);
  cuda::moe_scatter_add_rows(gdx.p, gdxp.p, grt.p, rows, D);
  st::expect_close(gdx.host(), dx, 0, 0, "scatter-add");
}

TEST(CudaMoe, GroupedLinearMatchesCpu) {
  SKIP_WITHOUT_DEVICE();
  // Experts with 5, 0 (idle), 150 (three 64-row tiles), 1 and 64 rows; IC, OC not multiples of 64;
  // the weights padded apart as in a layer's parameter buffer.
  const std::vector<int32_t> off = {0, 5, 5, 155, 156, 220};
  const int64_t E = 5, IC = 70, OC = 45, ws = IC * OC + 13, rows = off.back();
  const auto inp = st::randn(static_cast<size_t>(rows * IC), 940), w = st::randn(static_cast<size_t>(E * ws), 941),
             dout = st::randn(static_cast<size_t>(rows * OC), 942);
  const auto dinp0 = st::randn(inp.size(), 943), dw0 = st::randn(w.size(), 944);
  std::vector<float> out(static_cast<size_t>(rows * OC)), dinp(inp.size()), dinp_acc = dinp0, dw = dw0;
  cpu::moe_grouped_linear_forward(out.data(), inp.data(), w.data(), ws, off.data(), rows, E, IC, OC);
  cpu::moe_grouped_linear_backward(dinp.data(), dw.data(), dout.data(), inp.data(), w.data(), ws, off.data(), rows, E,
                                   IC, OC, false);
  cpu::moe_grouped_linear_backward(dinp_acc.data(), nullptr, dout.data(), inp.data(), w.data(), ws, off.data(), rows,
                                   E, IC, OC, true);
  DevVec<int32_t> goff(off);
  DevVec<float> ginp(inp), gw(w), gdout(dout), gout(out.size());
  cuda::moe_grouped_linear_forward(gout.p, ginp.p, gw.p, ws, goff.p, rows, E, IC, OC);
  st::expect_close(gout.host(), out, 1e-5 * 8, 1e-5, "grouped forward");
  std::vector<float> first_dinp, first_dw;
  for (int run = 0; run < 2; ++run) {
    DevVec<float> gdinp(inp.size()), gdinp_acc(dinp0), gdw(dw0);
    cuda::moe_grouped_linear_backward(gdinp.p, gdw.p, gdout.p, ginp.p, gw.p, ws, goff.p, rows, E, IC, OC, false);
    cuda::moe_grouped_linear_backward(gdinp_acc.p, nullptr, gdout.p, ginp.p, gw.p, ws, goff.p, rows, E, IC, OC, true);
    if (run == 0) {
      st::expect_close(gdinp.host(), dinp, 1e-5 * 8, 1e-5, "grouped dinp (assigned)");
      st::expect_close(gdinp_acc.host(), dinp_acc, 1e-5 * 8, 1e-5, "grouped dinp (accumulated)");
      st::expect_close(gdw.host(), dw, 1e-5 * 16, 1e-5, "grouped dW (accumulated; idle expert and padding untouched)");
      first_dinp = gdinp.host();
      first_dw = gdw.host();
    } else {
      EXPECT_EQ(gdinp.host(), first_dinp) << "grouped dinp differs between two runs";
      EXPECT_EQ(gdw.host(), first_dw) << "grouped dW differs between two runs";
    }
  }
}

TEST(CudaMoe, BadExpertIndexThrows) {
  SKIP_WITHOUT_DEVICE();
  const std::vector<int32_t> idx = {0, 1, 2, 9};  // 9 >= E
  DevVec<int32_t> gidx(idx), goff(5), grt(4), gro(4);
  EXPECT_THROW(cuda::moe_permute_indices(goff.p, grt.p, gro.p, gidx.p, 2, 4, 2), Error);
  DevVec<float> gp(8);
  EXPECT_THROW(cuda::moe_aux_loss_forward(gp.p, gidx.p, 2, 4, 2), Error);
}

}  // namespace
