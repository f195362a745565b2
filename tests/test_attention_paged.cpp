// Paged decode attention (cpu::attention_decode_paged): against attention_forward with Tq = 1 over
// the same keys laid out contiguously, one sequence at a time, for shuffled block tables, ragged
// sequence lengths (a partial last block, an empty sequence), GQA ratios, hd_qk != hd_v, MLA's
// shared latent rows (k and v views of one buffer), sliding windows (against attention_forward's
// window, and against full attention over only the window's keys); bad tables and lengths are refused.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/cpu/attention.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;

namespace {

struct PagedCase {
  int64_t B, Hq, Hkv, hd_qk, hd_v, block_size, max_blocks;
  std::vector<int32_t> seq_lens;
  bool shared_rows = false;  // MLA: v = the first hd_v channels of each k row (Hkv = 1)
  int64_t window = 0;        // sliding window (0: full causal)
};

// Builds a pool with a random permutation of blocks, runs the paged decode and the contiguous
// reference, and compares out and lse.
void check_paged(const PagedCase& c, uint64_t seed) {
  std::printf("paged decode B=%ld Hq=%ld Hkv=%ld hd_qk=%ld hd_v=%ld block=%ld max_blocks=%ld shared=%d window=%ld\n",
              long(c.B), long(c.Hq), long(c.Hkv), long(c.hd_qk), long(c.hd_v), long(c.block_size), long(c.max_blocks),
              int(c.shared_rows), long(c.window));
  const int64_t num_blocks = c.B * c.max_blocks + 3;  // a few spare blocks that nobody uses
  const int64_t k_ts = c.Hkv * c.hd_qk, v_ts = c.shared_rows ? k_ts : c.Hkv * c.hd_v;
  const int64_t slots = num_blocks * c.block_size;
  auto kpool = st::randn(size_t(slots * k_ts), seed);
  auto vpool = c.shared_rows ? std::vector<float>() : st::randn(size_t(slots * v_ts), seed + 1);
  const float* vbase = c.shared_rows ? kpool.data() : vpool.data();
  auto q = st::randn(size_t(c.B * c.Hq * c.hd_qk), seed + 2);
  std::vector<int32_t> perm(num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  Rng r(seed + 3);
  for (int64_t i = num_blocks - 1; i > 0; --i) std::swap(perm[i], perm[r.below(uint64_t(i + 1))]);
  std::vector<int32_t> table(size_t(c.B * c.max_blocks));
  for (size_t i = 0; i < table.size(); ++i) table[i] = perm[i];
  const float scale = 0.7f / std::sqrt(float(c.hd_qk));

  std::vector<float> out(size_t(c.B * c.Hq * c.hd_v)), lse(size_t(c.B * c.Hq));
  cpu::attention_decode_paged(out.data(), lse.data(), q.data(), kpool.data(), vbase, table.data(), c.seq_lens.data(),
                              c.B, c.Hq, c.Hkv, c.hd_qk, c.hd_v, scale, k_ts, v_ts, c.block_size, c.max_blocks,
                              num_blocks, c.window);

  std::vector<float> want(out.size(), 0.0f), want_lse(lse.size(), -INFINITY);
  for (int64_t b = 0; b < c.B; ++b) {
    const int64_t n = c.seq_lens[b];
    if (n == 0) continue;  // empty sequence: out 0, lse -inf
    std::vector<float> kc(size_t(n * k_ts)), vc(size_t(n * c.Hkv * c.hd_v));
    for (int64_t t = 0; t < n; ++t) {
      const int64_t slot = int64_t(table[b * c.max_blocks + t / c.block_size]) * c.block_size + t % c.block_size;
      std::copy_n(&kpool[slot * k_ts], k_ts, &kc[t * k_ts]);
      for (int64_t h = 0; h < c.Hkv; ++h)
        std::copy_n(vbase + slot * v_ts + h * c.hd_v, c.hd_v, &vc[(t * c.Hkv + h) * c.hd_v]);
    }
    cpu::attention_forward(&want[b * c.Hq * c.hd_v], &want_lse[b * c.Hq], &q[b * c.Hq * c.hd_qk], kc.data(),
                           vc.data(), 1, 1, n, c.Hq, c.Hkv, c.hd_qk, c.hd_v, scale, n * k_ts, k_ts,
                           n * c.Hkv * c.hd_v, c.Hkv * c.hd_v, c.window);
    if (c.window > 0) {
      // Second reference: full attention over only the last min(window, n) keys.
      const int64_t w = std::min(c.window, n), t0 = n - w;
      std::vector<float> o2(size_t(c.Hq * c.hd_v)), l2(size_t(c.Hq));
      cpu::attention_forward(o2.data(), l2.data(), &q[b * c.Hq * c.hd_qk], &kc[t0 * k_ts], &vc[t0 * c.Hkv * c.hd_v], 1,
                             1, w, c.Hq, c.Hkv, c.hd_qk, c.hd_v, scale, w * k_ts, k_ts, w * c.Hkv * c.hd_v,
                             c.Hkv * c.hd_v);
      st::expect_close(std::vector<float>(&want[b * c.Hq * c.hd_v], &want[(b + 1) * c.Hq * c.hd_v]), o2, 1e-6, 1e-5,
                       "windowed references agree");
    }
  }
  st::expect_close(out, want, 1e-5, 1e-4, "paged out");
  for (size_t i = 0; i < lse.size(); ++i)
    if (std::isinf(want_lse[i]))
      EXPECT_TRUE(std::isinf(lse[i]) && lse[i] < 0) << "lse[" << i << "] = " << lse[i];
    else
      EXPECT_NEAR(lse[i], want_lse[i], 1e-4 + 1e-5 * std::abs(want_lse[i])) << "lse[" << i << "]";
}

TEST(AttentionPaged, MatchesContiguousDecode) {
  check_paged({2, 4, 4, 32, 32, 16, 5, {37, 80}}, 1);             // MHA, partial and full last block
  check_paged({3, 8, 2, 64, 64, 16, 4, {1, 50, 64}}, 2);          // GQA 4, a one-token sequence
  check_paged({2, 6, 3, 24, 40, 8, 9, {0, 70}}, 3);               // GQA 2, hd_qk != hd_v, an empty sequence
  check_paged({2, 4, 1, 16, 16, 32, 3, {65, 96}}, 4);             // MQA
  check_paged({2, 4, 1, 40, 32, 16, 4, {33, 57}, true}, 5);       // MLA latent rows: v = k[:, :32]
  check_paged({1, 2, 1, 128, 128, 64, 40, {2500}}, 6);            // long: many key tiles
}

TEST(AttentionPaged, SlidingWindow) {
  check_paged({3, 8, 2, 32, 32, 16, 6, {90, 5, 64}, false, 7}, 11);      // window inside one key tile
  check_paged({2, 4, 4, 24, 40, 8, 40, {300, 129}, false, 130}, 12);     // window across key tiles and blocks
  check_paged({2, 4, 1, 40, 32, 16, 4, {33, 57}, true, 20}, 13);         // MLA latent rows
  check_paged({2, 4, 2, 16, 16, 4, 8, {0, 3}, false, 8}, 14);            // window longer than the sequence; empty
}

TEST(AttentionPaged, RefusesBadTables) {
  PagedCase c{1, 2, 1, 8, 8, 4, 2, {5}};
  std::vector<float> kv(size_t(4 * 4 * 8), 0.5f), q(16, 0.1f), out(16), lse(2);
  std::vector<int32_t> table{0, 7};  // block 7 of a 4-block pool
  EXPECT_THROW(cpu::attention_decode_paged(out.data(), lse.data(), q.data(), kv.data(), kv.data(), table.data(),
                                           c.seq_lens.data(), 1, 2, 1, 8, 8, 1.0f, 8, 8, 4, 2, 4),
               Error);
  table = {0, 1};
  std::vector<int32_t> too_long{9};  // more than max_blocks * block_size = 8
  EXPECT_THROW(cpu::attention_decode_paged(out.data(), lse.data(), q.data(), kv.data(), kv.data(), table.data(),
                                           too_long.data(), 1, 2, 1, 8, 8, 1.0f, 8, 8, 4, 2, 4),
               Error);
  EXPECT_NO_THROW(cpu::attention_decode_paged(out.data(), lse.data(), q.data(), kv.data(), kv.data(), table.data(),
                                              c.seq_lens.data(), 1, 2, 1, 8, 8, 1.0f, 8, 8, 4, 2, 4));
}

}  // namespace

namespace {

// The score and value steps: the vector path and the scalar one give the same bits (one fixed summation per
// dot product), at head sizes below, at and off the 16 lanes and key counts off the 16-key batch;
// both against a double-precision dot product.
TEST(AttentionPaged, ScoresVectorEqualsScalarBitwise) {
  for (int64_t hd : {1, 8, 16, 17, 64, 100, 576})
    for (int64_t kn : {1, 5, 16, 31, 64}) {
      const int64_t tstride = hd + 3, pool = 80;
      const auto k = st::randn(size_t(pool * tstride), uint64_t(hd * 100 + kn), 1.0f);
      const auto q = st::randn(size_t(hd), uint64_t(hd), 1.0f);
      std::vector<int64_t> slots(static_cast<size_t>(kn));
      for (int64_t j = 0; j < kn; ++j) slots[size_t(j)] = (j * 37 + 11) % pool;
      std::vector<float> v(static_cast<size_t>(kn)), p(static_cast<size_t>(kn));
      cpu::paged_scores(v.data(), q.data(), k.data(), slots.data(), kn, tstride, hd, 0.125f, false);
      cpu::paged_scores(p.data(), q.data(), k.data(), slots.data(), kn, tstride, hd, 0.125f, true);
      for (int64_t j = 0; j < kn; ++j) {
        ASSERT_EQ(v[size_t(j)], p[size_t(j)]) << "hd " << hd << " kn " << kn << " key " << j;
        double ref = 0, mag = 0;
        for (int64_t c = 0; c < hd; ++c) {
          const double t = double(q[size_t(c)]) * k[size_t(slots[size_t(j)] * tstride + c)];
          ref += t;
          mag += std::fabs(t);
        }
        ASSERT_NEAR(v[size_t(j)], 0.125 * ref, 1e-6 * 0.125 * mag + 1e-30) << "hd " << hd << " key " << j;
      }
      // The value step with these scores as weights, onto a non-zero o.
      std::vector<float> ov = st::randn(size_t(hd), 7, 1.0f), op = ov, o0 = ov;
      cpu::paged_pv(ov.data(), v.data(), k.data(), slots.data(), kn, tstride, hd, false);
      cpu::paged_pv(op.data(), v.data(), k.data(), slots.data(), kn, tstride, hd, true);
      for (int64_t c = 0; c < hd; ++c) {
        ASSERT_EQ(ov[size_t(c)], op[size_t(c)]) << "pv hd " << hd << " kn " << kn << " channel " << c;
        double ref = o0[size_t(c)], mag = std::fabs(ref);
        for (int64_t j = 0; j < kn; ++j) {
          const double t = double(v[size_t(j)]) * k[size_t(slots[size_t(j)] * tstride + c)];
          ref += t;
          mag += std::fabs(t);
        }
        ASSERT_NEAR(ov[size_t(c)], ref, 1e-6 * mag) << "pv hd " << hd << " channel " << c;
      }
    }
}

}  // namespace

namespace {

// The softmax weights' exp: vector and scalar paths equal bit for bit, within 2 ulp of std::exp
// (relative 2.4e-7) from 0 down to -87, and 0 below that and at -inf.
TEST(AttentionPaged, ExpVectorEqualsScalarAndStdExp) {
  std::vector<float> xs;
  for (float x = 0.0f; x > -90.0f; x -= 0.0137f) xs.push_back(x);
  for (float x : {-0.0f, -1e-30f, -1e-7f, -0.34657f, -0.34658f, -86.99f, -87.0f, -87.01f, -100.0f, -1e30f})
    xs.push_back(x);
  xs.push_back(-std::numeric_limits<float>::infinity());
  const float mx = 0.75f;  // the shift the kernel applies: s - mx
  std::vector<float> v(xs.size()), p(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) v[i] = p[i] = xs[i] + mx;
  cpu::paged_exp(v.data(), int64_t(v.size()), mx, false);
  cpu::paged_exp(p.data(), int64_t(p.size()), mx, true);
  double worst = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    ASSERT_EQ(v[i], p[i]) << "x = " << xs[i];
    const float x = (xs[i] + mx) - mx;
    const double want = x >= -87.0f ? std::exp(double(x)) : 0.0;
    if (want == 0.0) {
      EXPECT_EQ(v[i], 0.0f) << "x = " << x;
      continue;
    }
    const double rel = std::fabs(v[i] - want) / want;
    worst = std::max(worst, rel);
    ASSERT_LE(rel, 2.4e-7) << "x = " << x;
  }
  std::printf("  exp: worst relative error %.2e over %zu values\n", worst, xs.size());
}

}  // namespace
