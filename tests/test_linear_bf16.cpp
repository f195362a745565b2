// bf16 mixed precision of the linear layers (layers/linear.h): the cast op against an independent
// round-to-nearest-even reference on edge values; the ParamStore's bf16 shadow (offsets, refresh);
// linear_forward/backward in bf16 against a double reference computed on the bf16-rounded operands
// (tight) and against fp32 (bf16-sized); fp32 mode bit-identical to the fp32 kernels; clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/arena.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/params.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/gemm.h"
#include "layers/linear.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;

namespace {

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Round-to-nearest-even to bf16 by comparing distances in double: the two bf16 neighbours of x are
// its truncation and the next value up (in magnitude); ties go to the even significand. Finite x only.
uint16_t ref_bf16(float x) {
  const uint32_t u = bits_of(x);
  const uint16_t lo = uint16_t(u >> 16), hi = uint16_t(lo + 1);  // hi may be inf (the carry is right)
  const double dlo = std::abs(double(x) - double(bf16_to_f32(lo)));
  // Past the largest finite bf16 the next value up is inf, which IEEE rounding treats as 2^128 (the
  // value it would have with an unbounded exponent).
  const double hi_mag = std::isinf(bf16_to_f32(hi)) ? std::ldexp(1.0, 128) : std::abs(double(bf16_to_f32(hi)));
  const double dhi = hi_mag - std::abs(double(x));
  if (dlo < dhi) return lo;
  if (dhi < dlo) return hi;
  return (lo & 1u) ? hi : lo;
}

// Weight [OC, IC] (in the second half of a [2 OC, IC] parameter, so the shadow lookup of a slice at
// a non-zero offset is exercised) and bias [OC] in a ParamStore, with a bf16 shadow.
struct Layer {
  ParamStore ps;
  ParamRef w, b;
  int64_t IC, OC;
  Layer(int64_t ic, int64_t oc, uint64_t seed) : IC(ic), OC(oc) {
    ps.add("pad", {5}, Init::zeros(), false);  // the weight's offset is not 0
    w = ps.add("w", {2 * oc, ic}, Init::normal(0.5f), true);
    b = ps.add("b", {oc}, Init::normal(0.5f), false);
    ps.allocate(seed);
    enable_bf16_shadow(ps);
  }
  const float* weight() const { return ps.data(w) + OC * IC; }
  float* dweight() { return ps.grad(w) + OC * IC; }
};

std::vector<double> rounded(const float* x, size_t n) {
  std::vector<double> r(n);
  for (size_t i = 0; i < n; ++i) r[i] = double(bf16_to_f32(f32_to_bf16(x[i])));
  return r;
}

// ||a - b|| / ||b||
double rel_norm(const std::vector<float>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]), den += b[i] * b[i];
  return std::sqrt(num / den);
}

}  // namespace

TEST(CastF32ToBf16, EdgeValuesMatchDtypeAndIndependentReference) {
  std::vector<float> x = {
      0.0f, -0.0f, 1.0f, -1.0f,
      std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
      from_bits(0x3F808000u),  // 1 + 2^-8: a tie between 1 and 1 + 2^-7 -> even (1)
      from_bits(0x3F818000u),  // 1 + 3 * 2^-8: a tie -> even (1 + 2^-6)
      from_bits(0x3F808001u),  // just above the tie -> up
      from_bits(0xBF808000u),  // negative tie
      from_bits(0x7F7FFFFFu),  // FLT_MAX rounds to inf
      from_bits(0x7F7F7FFFu),  // just below the tie with inf: stays finite
      from_bits(0x00000001u),  // smallest denormal -> +0
      from_bits(0x00008000u),  // denormal tie -> even (0)
      from_bits(0x00018000u),  // denormal tie -> even (0x0002)
      from_bits(0x007FFFFFu),  // largest denormal rounds up to the smallest normal
      from_bits(0x80010000u),  // negative denormal, exact
  };
  Rng r(3);
  for (int i = 0; i < 4000; ++i) {  // random finite bit patterns of both signs, denormals included
    const uint32_t u = r.next_u32() & 0x7FFFFFFFu;
    if ((u & 0x7F800000u) != 0x7F800000u) x.push_back(from_bits(u | (i % 2 ? 0x80000000u : 0u)));
  }
  std::vector<uint16_t> got(x.size());
  cpu::cast_f32_to_bf16(got.data(), x.data(), int64_t(x.size()));
  int bad = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const uint16_t want = std::isinf(x[i]) ? uint16_t(bits_of(x[i]) >> 16) : ref_bf16(x[i]);
    EXPECT_EQ(got[i], f32_to_bf16(x[i])) << "vs core/dtype.h at " << i;
    if (got[i] != want && bad++ < 5) ADD_FAILURE() << std::hex << "x bits 0x" << bits_of(x[i]) << ": got 0x" << got[i] << " want 0x" << want;
  }
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(got[6], 0x3F80u);
  EXPECT_EQ(got[7], 0x3F82u);
  EXPECT_EQ(got[10], 0x7F80u);
  EXPECT_EQ(got[15], 0x0080u);

  // NaNs (quiet, signalling, negative, with payload only in the low half) stay NaN, quiet, signed.
  const std::vector<uint32_t> nans = {0x7FC00000u, 0x7F800001u, 0xFF800001u, 0x7FBFFFFFu, 0xFFC00001u};
  std::vector<float> xn;
  for (uint32_t u : nans) xn.push_back(from_bits(u));
  std::vector<uint16_t> gn(xn.size());
  cpu::cast_f32_to_bf16(gn.data(), xn.data(), int64_t(xn.size()));
  for (size_t i = 0; i < xn.size(); ++i) {
    EXPECT_TRUE(std::isnan(bf16_to_f32(gn[i]))) << std::hex << nans[i];
    EXPECT_TRUE(gn[i] & 0x40u) << "quiet bit, " << std::hex << nans[i];
    EXPECT_EQ(gn[i] >> 15, nans[i] >> 31) << "sign, " << std::hex << nans[i];
    EXPECT_EQ(gn[i], f32_to_bf16(xn[i]));
  }
}

TEST(CastF32ToBf16, LargeArrayUsesThreadsAndMatches) {
  auto x = st::randn(size_t(1) << 18, 5, 100.0f);
  std::vector<uint16_t> got(x.size());
  cpu::cast_f32_to_bf16(got.data(), x.data(), int64_t(x.size()));
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(got[i], f32_to_bf16(x[i])) << i;
}

TEST(ParamStoreShadow, FollowsWritesAfterRefreshAndMapsSlices) {
  Layer L(7, 3, 1);
  const float* flat = L.ps.flat();
  for (int64_t i = 0; i < L.ps.numel(); ++i) ASSERT_EQ(L.ps.bf16_of(flat)[i], f32_to_bf16(flat[i]));
  // A slice maps to the same offset of the shadow.
  EXPECT_EQ(L.ps.bf16_of(L.weight()), L.ps.bf16_of(flat) + (L.weight() - flat));
  // The shadow is derived: stale until refreshed.
  float* w = L.ps.data(L.w);
  w[0] = 3.0f;
  EXPECT_NE(L.ps.bf16_of(w)[0], f32_to_bf16(3.0f));
  refresh_bf16_shadow(L.ps);
  EXPECT_EQ(L.ps.bf16_of(w)[0], f32_to_bf16(3.0f));
  // set_flat_from_host refreshes by itself.
  std::vector<float> host(size_t(L.ps.numel()), -2.5f);
  L.ps.set_flat_from_host(host.data());
  EXPECT_EQ(L.ps.bf16_of(L.ps.flat())[L.ps.numel() - 1], f32_to_bf16(-2.5f));
  // A pointer outside the buffer, or a store without a shadow, is refused.
  float outside = 1.0f;
  EXPECT_THROW(L.ps.bf16_of(&outside), Error);
  EXPECT_THROW(L.ps.bf16_of(L.ps.flat() + L.ps.numel()), Error);
  ParamStore plain;
  plain.add("w", {4}, Init::zeros(), true);
  plain.allocate(1);
  try {
    plain.bf16_of(plain.flat());
    ADD_FAILURE() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("enable_bf16_shadow"), std::string::npos) << e.what();
  }
}

TEST(LinearBf16, Fp32ModeIsTheFp32KernelBitForBit) {
  const int64_t N = 19, IC = 23, OC = 11;
  Layer L(IC, OC, 2);
  auto x = st::randn(size_t(N * IC), 3), dy = st::randn(size_t(N * OC), 4);
  Arena arena;
  Ctx ctx{Device::cpu, &arena, true};
  std::vector<float> a(size_t(N * OC)), b(size_t(N * OC));
  linear_forward(ctx, a.data(), x.data(), L.weight(), L.ps.data(L.b), N, IC, OC);
  cpu::linear_forward(b.data(), x.data(), L.weight(), L.ps.data(L.b), N, IC, OC);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
  std::vector<float> da(size_t(N * IC)), db(size_t(N * IC));
  linear_backward(ctx, da.data(), nullptr, nullptr, dy.data(), x.data(), L.weight(), N, IC, OC);
  cpu::linear_backward(db.data(), nullptr, nullptr, dy.data(), x.data(), L.weight(), N, IC, OC);
  EXPECT_EQ(0, std::memcmp(da.data(), db.data(), da.size() * sizeof(float)));
}

TEST(LinearBf16, ForwardAndBackwardMatchDoubleReferenceOnRoundedOperands) {
  struct Shape {
    int64_t N, IC, OC;
  };
  for (Shape s : {Shape{37, 53, 29}, Shape{1, 8, 16}, Shape{130, 96, 64}}) {
    const int64_t N = s.N, IC = s.IC, OC = s.OC;
    std::printf("N=%ld IC=%ld OC=%ld\n", long(N), long(IC), long(OC));
    Layer L(IC, OC, uint64_t(N));
    const auto x = st::randn(size_t(N * IC), 10), dy = st::randn(size_t(N * OC), 11);
    const auto dx0 = st::randn(size_t(N * IC), 12), dw0 = st::randn(size_t(OC * IC), 13);
    const auto db0 = st::randn(size_t(OC), 14);
    const float* bias = L.ps.data(L.b);
    Arena arena;
    Ctx ctx{Device::cpu, &arena, true};
    ctx.precision = Precision::bf16;
    ctx.params = &L.ps;

    // Double references: on the bf16-rounded operands (what the bf16 path must compute up to fp32
    // accumulation) and on the unrounded ones (what fp32 computes).
    const auto xr = rounded(x.data(), x.size()), wr = rounded(L.weight(), size_t(OC * IC));
    const auto dyr = rounded(dy.data(), dy.size());
    std::vector<double> y_ref(size_t(N * OC)), y_f32(size_t(N * OC));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < OC; ++o) {
        double s1 = 0, s2 = 0;
        for (int64_t i = 0; i < IC; ++i) {
          s1 += xr[size_t(n * IC + i)] * wr[size_t(o * IC + i)];
          s2 += double(x[size_t(n * IC + i)]) * double(L.weight()[o * IC + i]);
        }
        y_ref[size_t(n * OC + o)] = s1 + double(bias[o]);
        y_f32[size_t(n * OC + o)] = s2 + double(bias[o]);
      }
    std::vector<float> y(size_t(N * OC));
    linear_forward(ctx, y.data(), x.data(), L.weight(), bias, N, IC, OC);
    std::printf("  forward: rel norm vs rounded-operand ref %.2e, vs fp32 ref %.2e\n", rel_norm(y, y_ref),
                rel_norm(y, y_f32));
    EXPECT_LT(rel_norm(y, y_ref), 1e-6);
    st::expect_close(y, y_ref, 1e-5, 1e-5, "y vs rounded-operand ref");
    // bf16-sized against fp32, and not fp32 in disguise.
    EXPECT_LT(rel_norm(y, y_f32), 1e-2);
    EXPECT_GT(rel_norm(y, y_f32), 1e-5);

    // Backward: dx accumulated onto dx0 (accumulate_dinp), dW and db accumulated onto dw0, db0.
    std::vector<float> dx = dx0;
    std::copy(dw0.begin(), dw0.end(), L.dweight());
    std::copy(db0.begin(), db0.end(), L.ps.grad(L.b));
    linear_backward(ctx, dx.data(), L.dweight(), L.ps.grad(L.b), dy.data(), x.data(), L.weight(), N, IC, OC, true);
    std::vector<double> dx_ref(size_t(N * IC)), dw_ref(size_t(OC * IC)), db_ref(static_cast<size_t>(OC));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < IC; ++i) {
        double s = 0;
        for (int64_t o = 0; o < OC; ++o) s += dyr[size_t(n * OC + o)] * wr[size_t(o * IC + i)];
        dx_ref[size_t(n * IC + i)] = double(dx0[size_t(n * IC + i)]) + s;
      }
    for (int64_t o = 0; o < OC; ++o) {
      for (int64_t i = 0; i < IC; ++i) {
        double s = 0;
        for (int64_t n = 0; n < N; ++n) s += dyr[size_t(n * OC + o)] * xr[size_t(n * IC + i)];
        dw_ref[size_t(o * IC + i)] = double(dw0[size_t(o * IC + i)]) + s;
      }
      double s = 0;
      for (int64_t n = 0; n < N; ++n) s += double(dy[size_t(n * OC + o)]);  // fp32 dout: no rounding
      db_ref[size_t(o)] = double(db0[size_t(o)]) + s;
    }
    std::vector<float> dw(L.dweight(), L.dweight() + OC * IC), db(L.ps.grad(L.b), L.ps.grad(L.b) + OC);
    std::printf("  backward: rel norm dx %.2e dW %.2e db %.2e\n", rel_norm(dx, dx_ref), rel_norm(dw, dw_ref),
                rel_norm(db, db_ref));
    EXPECT_LT(rel_norm(dx, dx_ref), 1e-6);
    EXPECT_LT(rel_norm(dw, dw_ref), 1e-6);
    EXPECT_LT(rel_norm(db, db_ref), 1e-6);
    st::expect_close(dx, dx_ref, 1e-5, 1e-5, "dx (accumulated)");
    st::expect_close(dw, dw_ref, 2e-5, 1e-5, "dW (accumulated)");
    st::expect_close(db, db_ref, 2e-5, 1e-5, "db (accumulated)");

    // Assigned dinp, skipped dweight / dbias.
    std::vector<float> dx2 = dx0;
    linear_backward(ctx, dx2.data(), nullptr, nullptr, dy.data(), x.data(), L.weight(), N, IC, OC, false);
    for (size_t i = 0; i < dx_ref.size(); ++i) dx_ref[i] -= double(dx0[i]);
    st::expect_close(dx2, dx_ref, 1e-5, 1e-5, "dx (assigned)");
  }
}

TEST(LinearBf16, RefusesWeightsWithoutShadowAndMissingContext) {
  const int64_t N = 2, IC = 4, OC = 3;
  Layer L(IC, OC, 1);
  std::vector<float> x(size_t(N * IC), 1.0f), y(size_t(N * OC)), foreign(size_t(OC * IC), 1.0f);
  Arena arena;
  Ctx ctx{Device::cpu, &arena, true};
  ctx.precision = Precision::bf16;
  EXPECT_THROW(linear_forward(ctx, y.data(), x.data(), L.weight(), nullptr, N, IC, OC), Error);  // no ctx.params
  ctx.params = &L.ps;
  try {
    linear_forward(ctx, y.data(), x.data(), foreign.data(), nullptr, N, IC, OC);
    ADD_FAILURE() << "a weight outside the ParamStore was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("outside the flat parameter buffer"), std::string::npos) << e.what();
  }
}
