// Flash attention: forward (out and lse) against a naive double reference for MHA / GQA / MQA, odd T
// crossing key tiles, Tq < Tk, decode from a strided cache, generic head dims; backward against
// central finite differences in double of that reference (all entries on small shapes, a sample on
// multi-tile shapes) and against the analytic double gradient everywhere; thread-count independence.
// MLA shapes: value head dim != qk head dim, an explicit softmax scale, and decode over a latent
// cache where k and v are the same rows (v = their first hv channels).
// Sliding window (window > 0): the same checks with each query seeing only its last `window` positions
// (windows below, at and above a key tile, not aligned to tiles, of 1, and of Tk or more).
#include <omp.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/attention.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;
using st::expect_close;

namespace {

using dvec = std::vector<double>;

struct Case {
  int64_t B, Tq, Tk, Hq, Hkv, hd;  // hd: the qk head dim
  int64_t Tmax = 0;                // cache capacity (bstride = Tmax*Hkv*hd); 0 -> Tk (contiguous)
  int64_t hv_ = 0;                 // value head dim; 0 -> hd
  double scale_ = 0;               // softmax scale; 0 -> 1/sqrt(hd)
  int64_t window = 0;              // sliding window; 0 -> full causal
  int64_t hv() const { return hv_ ? hv_ : hd; }
  float scale() const { return scale_ ? float(scale_) : 1.0f / std::sqrt(float(hd)); }
  int64_t cap() const { return Tmax ? Tmax : Tk; }
  int64_t nq() const { return B * Tq * Hq * hd; }
  int64_t nout() const { return B * Tq * Hq * hv(); }
  int64_t nk() const { return B * cap() * Hkv * hd; }
  int64_t nv() const { return B * cap() * Hkv * hv(); }
  int64_t ks() const { return cap() * Hkv * hd; }    // batch stride of k
  int64_t vs() const { return cap() * Hkv * hv(); }  // batch stride of v
};

void print_case(const char* what, const Case& c) {
  std::printf("attention %s B=%ld Tq=%ld Tk=%ld Hq=%ld Hkv=%ld hd_qk=%ld hd_v=%ld scale=%g Tmax=%ld window=%ld\n",
              what, long(c.B), long(c.Tq), long(c.Tk), long(c.Hq), long(c.Hkv), long(c.hd), long(c.hv()),
              double(c.scale()), long(c.cap()), long(c.window));
}

// The lowest key position `pos` sees: 0, or pos - window + 1 with a sliding window.
int64_t first_key(int64_t pos, const Case& c) { return c.window > 0 ? std::max<int64_t>(0, pos - c.window + 1) : 0; }

// Naive causal attention in double: full score rows, max-subtracted softmax.
// q[B, Tq, Hq, hd], k/v with batch strides c.ks() / c.vs() -> out[B, Tq, Hq, hv], lse[B, Hq, Tq].
void ref_attention(dvec& out, dvec& lse, const dvec& q, const dvec& k, const dvec& v, const Case& c) {
  out.assign(c.nout(), 0.0);
  lse.assign(c.B * c.Hq * c.Tq, 0.0);
  const int64_t G = c.Hq / c.Hkv, hv = c.hv();
  const double scale = c.scale();
  dvec s(c.Tk);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.Hq; ++h)
      for (int64_t i = 0; i < c.Tq; ++i) {
        const int64_t pos = c.Tk - c.Tq + i, kh = h / G;
        const double* qi = &q[((b * c.Tq + i) * c.Hq + h) * c.hd];
        double mx = -INFINITY;
        const int64_t j0 = first_key(pos, c);
        for (int64_t j = j0; j <= pos; ++j) {
          const double* kj = &k[b * c.ks() + (j * c.Hkv + kh) * c.hd];
          double d = 0;
          for (int64_t e = 0; e < c.hd; ++e) d += qi[e] * kj[e];
          s[j] = d * scale;
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (int64_t j = j0; j <= pos; ++j) sum += std::exp(s[j] - mx);
        double* o = &out[((b * c.Tq + i) * c.Hq + h) * hv];
        for (int64_t j = j0; j <= pos; ++j) {
          const double p = std::exp(s[j] - mx) / sum;
          const double* vj = &v[b * c.vs() + (j * c.Hkv + kh) * hv];
          for (int64_t e = 0; e < hv; ++e) o[e] += p * vj[e];
        }
        lse[(b * c.Hq + h) * c.Tq + i] = mx + std::log(sum);
      }
}

// Analytic gradient of sum(dout * out) in double (Tq == Tk): dv = P^T dO, dS = P (dO V^T - rowsum(dO O)),
// dq = scale dS K, dk = scale dS^T Q.
void ref_attention_backward(dvec& dq, dvec& dk, dvec& dv, const dvec& dout, const dvec& q, const dvec& k,
                            const dvec& v, const Case& c) {
  dvec out, lse;
  ref_attention(out, lse, q, k, v, c);
  dq.assign(c.nq(), 0.0);
  dk.assign(c.nk(), 0.0);
  dv.assign(c.nv(), 0.0);
  const int64_t G = c.Hq / c.Hkv, T = c.Tq, hv = c.hv();
  const double scale = c.scale();
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.Hq; ++h)
      for (int64_t i = 0; i < T; ++i) {
        const int64_t kh = h / G, qo = ((b * T + i) * c.Hq + h) * c.hd, oo = ((b * T + i) * c.Hq + h) * hv;
        double D = 0;
        for (int64_t e = 0; e < hv; ++e) D += dout[oo + e] * out[oo + e];
        for (int64_t j = first_key(i, c); j <= i; ++j) {
          const int64_t ko = b * c.ks() + (j * c.Hkv + kh) * c.hd, vo = b * c.vs() + (j * c.Hkv + kh) * hv;
          double s = 0, dp = 0;
          for (int64_t e = 0; e < c.hd; ++e) s += q[qo + e] * k[ko + e];
          for (int64_t e = 0; e < hv; ++e) dp += dout[oo + e] * v[vo + e];
          const double p = std::exp(s * scale - lse[(b * c.Hq + h) * T + i]);
          const double ds = p * (dp - D) * scale;
          for (int64_t e = 0; e < hv; ++e) dv[vo + e] += p * dout[oo + e];
          for (int64_t e = 0; e < c.hd; ++e) {
            dq[qo + e] += ds * k[ko + e];
            dk[ko + e] += ds * q[qo + e];
          }
        }
      }
}

struct Data {
  std::vector<float> q, k, v;
};

// K/V slots beyond Tk (cache room not yet written) hold NaN: reading them would poison the output.
Data make_data(const Case& c, uint64_t seed) {
  Data d{st::randn(c.nq(), seed), st::randn(c.nk(), seed + 1), st::randn(c.nv(), seed + 2)};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t t = c.Tk; t < c.cap(); ++t) {
      for (int64_t e = 0; e < c.Hkv * c.hd; ++e) d.k[b * c.ks() + t * c.Hkv * c.hd + e] = nan;
      for (int64_t e = 0; e < c.Hkv * c.hv(); ++e) d.v[b * c.vs() + t * c.Hkv * c.hv() + e] = nan;
    }
  return d;
}

void run_forward(std::vector<float>& out, std::vector<float>& lse, const Data& d, const Case& c) {
  out.assign(c.nout(), 1e30f);
  lse.assign(c.B * c.Hq * c.Tq, 1e30f);
  cpu::attention_forward(out.data(), lse.data(), d.q.data(), d.k.data(), d.v.data(), c.B, c.Tq, c.Tk, c.Hq, c.Hkv,
                         c.hd, c.hv(), c.scale(), c.ks(), c.Hkv * c.hd, c.vs(), c.Hkv * c.hv(), c.window);
}

struct Grads {
  std::vector<float> dq, dk, dv;
};
Grads run_backward(const Data& d, const std::vector<float>& dout, const Case& c) {
  std::vector<float> out, lse;
  run_forward(out, lse, d, c);
  Grads g{std::vector<float>(c.nq(), 1e30f), std::vector<float>(c.nk(), 1e30f), std::vector<float>(c.nv(), 1e30f)};
  cpu::attention_backward(g.dq.data(), g.dk.data(), g.dv.data(), dout.data(), d.q.data(), d.k.data(), d.v.data(),
                          out.data(), lse.data(), c.B, c.Tq, c.Hq, c.Hkv, c.hd, c.hv(), c.scale(), c.window);
  return g;
}

// Central difference of sum(w * ref_attention(q, k, v)) with respect to x[i] (x one of qd/kd/vd).
double fd_at(dvec& x, int64_t i, const dvec& qd, const dvec& kd, const dvec& vd, const std::vector<float>& w,
             const Case& c, double h = 1e-6) {
  auto loss = [&] {
    dvec out, lse;
    ref_attention(out, lse, qd, kd, vd, c);
    double s = 0;
    for (size_t n = 0; n < out.size(); ++n) s += double(w[n]) * out[n];
    return s;
  };
  const double keep = x[i];
  x[i] = keep + h;
  const double lp = loss();
  x[i] = keep - h;
  const double lm = loss();
  x[i] = keep;
  return (lp - lm) / (2 * h);
}

}  // namespace

TEST(Attention, ForwardMatchesDoubleReference) {
  const Case cases[] = {
      {2, 37, 37, 3, 3, 16},        // MHA, odd T within one key tile
      {2, 70, 70, 4, 2, 32},        // GQA, T crosses a key tile and a query block
      {1, 130, 130, 4, 1, 16},      // MQA, three key tiles
      {2, 5, 70, 4, 2, 32},         // Tq < Tk (chunked prefill)
      {3, 1, 70, 4, 2, 32, 100},    // decode from a cache with room for 100 (rest NaN)
      {2, 1, 129, 16, 1, 16, 130},  // decode, 16 heads per kv head (transposed score path)
      {1, 1, 1, 2, 2, 16},          // first decode step: one key
      {2, 23, 23, 6, 3, 24},        // head dim without a specialised kernel
      {1, 67, 67, 2, 2, 64},        // hd 64
      {1, 40, 70, 16, 2, 128},      // hd 128, G = 8, Tq < Tk
      // MLA: hd_qk != hd_v, explicit scale
      {2, 70, 70, 4, 4, 24, 0, 16, 0.3},   // expanded MLA training shape (nope 16 + rope 8, v 16)
      {1, 67, 67, 2, 1, 40, 0, 32, 0.11},  // MQA with v narrower than qk
      {2, 5, 70, 4, 2, 16, 0, 24, 0.5},    // v wider than qk, Tq < Tk
      {2, 1, 70, 8, 1, 72, 100, 64, 0.2},  // decode over a cache, transposed score path
      // Sliding window
      {2, 70, 70, 4, 2, 32, 0, 0, 0, 5},        // GQA, window far below a key tile
      {1, 130, 130, 4, 1, 16, 0, 0, 0, 64},     // MQA, window of exactly one key tile
      {1, 200, 200, 2, 2, 16, 0, 0, 0, 70},     // MHA (few rows per block), window across tiles
      {2, 37, 37, 3, 3, 16, 0, 0, 0, 1},        // window 1: each query sees only itself
      {1, 37, 37, 3, 3, 16, 0, 0, 0, 100},      // window >= T: full causal
      {2, 5, 70, 4, 2, 32, 0, 0, 0, 9},         // Tq < Tk (chunked prefill)
      {3, 1, 70, 4, 2, 32, 100, 0, 0, 10},      // decode past the window, cache rest NaN
      {2, 1, 129, 16, 1, 16, 130, 0, 0, 33},    // decode, transposed score path
      {1, 40, 70, 16, 2, 128, 0, 0, 0, 17},     // hd 128, G = 8, Tq < Tk
      {2, 70, 70, 4, 4, 24, 0, 16, 0.3, 7},     // MLA dims
  };
  for (const Case& c : cases) {
    print_case("forward", c);
    Data d = make_data(c, 100 + c.Tq);
    std::vector<float> out, lse;
    run_forward(out, lse, d, c);
    dvec want, want_lse;
    ref_attention(want, want_lse, st::to_double(d.q), st::to_double(d.k), st::to_double(d.v), c);
    expect_close(out, want, 2e-5, 1e-4, "out vs double ref");
    expect_close(lse, want_lse, 2e-5, 1e-5, "lse vs double ref");
    // lse may be null (decode does not need it) and changes nothing else.
    std::vector<float> out2(c.nout(), 1e30f);
    cpu::attention_forward(out2.data(), nullptr, d.q.data(), d.k.data(), d.v.data(), c.B, c.Tq, c.Tk, c.Hq, c.Hkv,
                           c.hd, c.hv(), c.scale(), c.ks(), c.Hkv * c.hd, c.vs(), c.Hkv * c.hv(), c.window);
    expect_close(out2, out, 0, 0, "lse == null");
  }
}

TEST(Attention, LargeScoresAreStable) {
  // Scores of order 100 overflow a naive exp; the online max keeps everything finite.
  const Case c{1, 70, 70, 2, 1, 16};
  Data d = make_data(c, 7);
  for (auto& x : d.q) x *= 12.0f;
  for (auto& x : d.k) x *= 12.0f;
  std::vector<float> out, lse;
  run_forward(out, lse, d, c);
  dvec want, want_lse;
  ref_attention(want, want_lse, st::to_double(d.q), st::to_double(d.k), st::to_double(d.v), c);
  // A score of ~500 carries an fp32 rounding of ~3e-5, which moves near-ties of the softmax.
  expect_close(out, want, 2e-3, 1e-3, "out vs double ref");
  expect_close(lse, want_lse, 1e-3, 1e-5, "lse vs double ref");
}

TEST(Attention, BackwardMatchesFiniteDifferencesSmall) {
  // Every entry of dq, dk, dv against central differences of the double reference.
  const Case cases[] = {
      {2, 9, 9, 4, 2, 16},  // GQA
      {1, 7, 7, 3, 1, 16},  // MQA
      {2, 6, 6, 2, 2, 32},  // MHA
      {1, 5, 5, 2, 1, 12},  // generic head dim
      {2, 6, 6, 4, 2, 12, 0, 8, 0.37},  // hd_qk != hd_v, explicit scale
      {1, 5, 5, 2, 2, 8, 0, 12, 0.6},   // v wider than qk
      {2, 9, 9, 4, 2, 16, 0, 0, 0, 3},       // sliding window, GQA
      {1, 7, 7, 3, 1, 16, 0, 0, 0, 1},       // window 1
      {2, 6, 6, 4, 2, 12, 0, 8, 0.37, 4},    // window with hd_qk != hd_v
  };
  for (const Case& c : cases) {
    print_case("backward (all FD)", c);
    Data d = make_data(c, 200 + c.Tq);
    auto w = st::randn(c.nout(), 300 + c.Tq);
    Grads g = run_backward(d, w, c);
    dvec qd = st::to_double(d.q), kd = st::to_double(d.k), vd = st::to_double(d.v);
    dvec fq(c.nq()), fk(c.nk()), fv(c.nv());
    for (int64_t i = 0; i < c.nq(); ++i) fq[i] = fd_at(qd, i, qd, kd, vd, w, c);
    for (int64_t i = 0; i < c.nk(); ++i) fk[i] = fd_at(kd, i, qd, kd, vd, w, c);
    for (int64_t i = 0; i < c.nv(); ++i) fv[i] = fd_at(vd, i, qd, kd, vd, w, c);
    expect_close(g.dq, fq, 2e-5, 1e-4, "dq vs FD");
    expect_close(g.dk, fk, 2e-5, 1e-4, "dk vs FD");
    expect_close(g.dv, fv, 2e-5, 1e-4, "dv vs FD");
  }
}

TEST(Attention, BackwardMatchesReferenceMultiTile) {
  // Shapes spanning several key tiles and query blocks: all entries against the analytic double
  // gradient, and a sample against central differences (which also checks that analytic reference).
  const Case cases[] = {
      {2, 70, 70, 4, 2, 32},    // GQA
      {1, 130, 130, 4, 1, 16},  // MQA, three tiles
      {2, 37, 37, 3, 3, 16},    // MHA
      {1, 67, 67, 8, 1, 64},    // G = 8, hd 64
      {1, 69, 69, 2, 2, 24},    // generic head dim across tiles
      {2, 70, 70, 4, 4, 24, 0, 16, 0.3},  // MLA expanded: hd_qk 24, hd_v 16, explicit scale
      {1, 67, 67, 8, 2, 32, 0, 64, 0.2},  // v wider than qk across tiles
      {2, 70, 70, 4, 2, 32, 0, 0, 0, 5},      // sliding window, GQA
      {1, 130, 130, 4, 1, 16, 0, 0, 0, 40},   // window across key tiles, MQA
      {1, 200, 200, 2, 2, 16, 0, 0, 0, 70},   // window wider than a key tile
      {1, 67, 67, 8, 1, 64, 0, 0, 0, 64},     // window of one tile, G = 8
  };
  for (const Case& c : cases) {
    print_case("backward (multi-tile)", c);
    Data d = make_data(c, 400 + c.Tq);
    auto w = st::randn(c.nout(), 500 + c.Tq);
    Grads g = run_backward(d, w, c);
    dvec qd = st::to_double(d.q), kd = st::to_double(d.k), vd = st::to_double(d.v);
    dvec rq, rk, rv;
    ref_attention_backward(rq, rk, rv, st::to_double(w), qd, kd, vd, c);
    expect_close(g.dq, rq, 2e-5, 1e-4, "dq vs double ref");
    expect_close(g.dk, rk, 2e-5, 1e-4, "dk vs double ref");
    expect_close(g.dv, rv, 2e-5, 1e-4, "dv vs double ref");
    Rng pick(600 + c.Tq);
    dvec got, want;
    for (int s = 0; s < 8; ++s) {
      int64_t i = int64_t(pick.below(uint64_t(c.nq())));
      got.push_back(g.dq[i]), want.push_back(fd_at(qd, i, qd, kd, vd, w, c));
      i = int64_t(pick.below(uint64_t(c.nk())));
      got.push_back(g.dk[i]), want.push_back(fd_at(kd, i, qd, kd, vd, w, c));
      i = int64_t(pick.below(uint64_t(c.nv())));
      got.push_back(g.dv[i]), want.push_back(fd_at(vd, i, qd, kd, vd, w, c));
    }
    expect_close(got, want, 2e-5, 1e-4, "dq|dk|dv sample vs FD");
  }
}

TEST(Attention, IndependentOfThreadCount) {
  const Case c{2, 70, 70, 4, 2, 32};
  Data d = make_data(c, 9);
  auto w = st::randn(c.nout(), 10);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  std::vector<float> o1, l1;
  run_forward(o1, l1, d, c);
  Grads g1 = run_backward(d, w, c);
  omp_set_num_threads(2);
  std::vector<float> o2, l2;
  run_forward(o2, l2, d, c);
  Grads g2 = run_backward(d, w, c);
  omp_set_num_threads(saved);
  EXPECT_EQ(o1, o2);
  EXPECT_EQ(l1, l2);
  EXPECT_EQ(g1.dq, g2.dq);
  EXPECT_EQ(g1.dk, g2.dk);
  EXPECT_EQ(g1.dv, g2.dv);
}

TEST(Attention, DecodeOverLatentCache) {
  // MLA decode: one kv head whose rows are [latent (hv channels), rope key]; k is the whole row,
  // v its first hv channels, read in place from the same cache (the rest of the cache is NaN).
  const Case cases[] = {
      {2, 1, 70, 8, 1, 40, 100, 32, 0.2},   // 8 heads: the transposed score path
      {2, 1, 130, 4, 1, 24, 131, 16, 0.3},  // 4 heads: dot products by rows; three key tiles
      {1, 3, 9, 4, 1, 20, 16, 12, 0.25},    // a few queries at once (Tq < Tk), odd dims
      {2, 1, 130, 4, 1, 24, 131, 16, 0.3, 20},  // sliding window (MLA with attention.window)
  };
  for (const Case& c : cases) {
    print_case("latent decode", c);
    const int64_t row = c.hd;
    std::vector<float> q = st::randn(c.nq(), 700 + c.Tk), cache = st::randn(c.nk(), 800 + c.Tk);
    std::vector<float> v(c.nv());
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t t = 0; t < c.cap(); ++t)
        for (int64_t e = 0; e < row; ++e) {
          float& x = cache[b * c.ks() + t * row + e];
          if (t >= c.Tk) x = std::numeric_limits<float>::quiet_NaN();
          if (e < c.hv()) v[b * c.vs() + t * c.hv() + e] = x;
        }
    std::vector<float> out(c.nout(), 1e30f), lse(c.B * c.Hq * c.Tq, 1e30f);
    cpu::attention_forward(out.data(), lse.data(), q.data(), cache.data(), cache.data(), c.B, c.Tq, c.Tk, c.Hq, 1,
                           c.hd, c.hv(), c.scale(), c.ks(), row, c.ks(), row, c.window);
    dvec want, want_lse;
    ref_attention(want, want_lse, st::to_double(q), st::to_double(cache), st::to_double(v), c);
    expect_close(out, want, 2e-5, 1e-4, "out vs double ref");
    expect_close(lse, want_lse, 2e-5, 1e-5, "lse vs double ref");
  }
}

TEST(Attention, RejectsBadShapes) {
  std::vector<float> x(4096), o(4096), l(64);
  auto fwd = [&](int64_t B, int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hkv, int64_t hk, int64_t hv, float scale,
                 int64_t kbs, int64_t kts, int64_t vbs, int64_t vts) {
    cpu::attention_forward(o.data(), l.data(), x.data(), x.data(), x.data(), B, Tq, Tk, Hq, Hkv, hk, hv, scale, kbs, kts,
                           vbs, vts);
  };
  EXPECT_NO_THROW(fwd(2, 1, 4, 2, 2, 8, 8, 0.3f, 64, 16, 64, 16));
  EXPECT_THROW(fwd(1, 4, 3, 2, 2, 8, 8, 0.3f, 48, 16, 48, 16), Error);  // Tq > Tk
  EXPECT_THROW(fwd(1, 4, 4, 3, 2, 8, 8, 0.3f, 64, 16, 64, 16), Error);  // kv heads do not divide
  EXPECT_THROW(fwd(2, 1, 4, 2, 2, 8, 8, 0.3f, 32, 16, 64, 16), Error);  // k batch stride too small
  EXPECT_THROW(fwd(2, 1, 4, 2, 2, 8, 8, 0.3f, 64, 16, 32, 8), Error);   // v token stride too small
  EXPECT_THROW(fwd(1, 1, 4, 2, 2, 8, 0, 0.3f, 64, 16, 64, 16), Error);  // no value channels
  EXPECT_THROW(fwd(1, 1, 4, 2, 2, 8, 8, 0.0f, 64, 16, 64, 16), Error);  // scale 0
  EXPECT_THROW(fwd(1, 1, 4, 2, 2, 8, 8, NAN, 64, 16, 64, 16), Error);   // scale NaN
  EXPECT_THROW(cpu::attention_forward(o.data(), l.data(), x.data(), x.data(), x.data(), 1, 1, 4, 2, 2, 8, 8, 0.3f, 64,
                                      16, 64, 16, -1),
               Error);  // negative window
  EXPECT_THROW(cpu::attention_backward(o.data(), o.data(), o.data(), x.data(), x.data(), x.data(), x.data(), x.data(),
                                       l.data(), 1, 4, 4, 3, 8, 8, 0.3f),
               Error);
}
