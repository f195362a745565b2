// RoPE (rotate_half convention): forward against a double reference (full and partial rotary dims,
// offsets, in place), backward against central finite differences of that reference, the
// decode-path identity (T tokens at pos0 == T single-token calls at pos0 + t), and shape checks.
// Then the inverse-frequency tables (layers/rope_freq.h): default, linear and llama3 against double
// re-derivations of transformers' formulas, the refusals, and the config keys.
// (tests/test_hf_layers.cpp compares the tables and the whole attention with transformers itself.)
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/rope.h"
#include "layers/rope_freq.h"
#include "testing.h"
#include "train/config_load.h"

using namespace strata;
namespace st = strata::testing;
using st::expect_close;

namespace {

using dvec = std::vector<double>;

struct Case {
  int64_t B, T, H, hd, rot, pos0;
  float theta;
};

std::vector<float> table(const Case& c) { return rope_default_inv_freq(c.rot, c.theta); }

// out = x with, for i < rot/2, (x_i, x_{i+rot/2}) rotated by angle (pos0 + t) * inv_freq[i]; in double.
// The angles use the fp32 table the kernel is given: at position 1e5 the table's own fp32 rounding
// (~6e-8 relative) moves an angle by ~6e-3 rad, which is what transformers' fp32 table does too.
dvec ref_rope(const dvec& x, const Case& c) {
  dvec out = x;
  const int64_t half = c.rot / 2;
  const auto f = table(c);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t h = 0; h < c.H; ++h)
        for (int64_t i = 0; i < half; ++i) {
          const double a = double(c.pos0 + t) * double(f[size_t(i)]);
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
  cpu::rope_forward(out.data(), x.data(), c.B, c.T, c.H, c.hd, c.rot, c.pos0, table(c).data());
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
    cpu::rope_forward(inplace.data(), inplace.data(), c.B, c.T, c.H, c.hd, c.rot, c.pos0, table(c).data());
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
    cpu::rope_backward(dx.data(), w.data(), c.B, c.T, c.H, c.hd, c.rot, c.pos0, table(c).data());
    expect_close(dx, fd, 1e-6, 1e-5, "dx vs FD");
    auto inplace = w;
    cpu::rope_backward(inplace.data(), inplace.data(), c.B, c.T, c.H, c.hd, c.rot, c.pos0, table(c).data());
    expect_close(inplace, dx, 0, 0, "in place == out of place");
  }
}

TEST(Rope, BackwardInvertsForward) {
  // R is orthogonal, so R^T R x = x.
  const Case c{2, 9, 3, 32, 32, 1234, 10000.0f};
  auto x = st::randn(numel(c), 21);
  auto y = run_forward(x, c);
  std::vector<float> back(y.size());
  cpu::rope_backward(back.data(), y.data(), c.B, c.T, c.H, c.hd, c.rot, c.pos0, table(c).data());
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
      cpu::rope_forward(tok.data() + o, x.data() + o, 1, 1, c.H, c.hd, c.rot, t, table(c).data());
    }
  expect_close(tok, seq, 1e-6, 1e-6, "per-token vs sequence");
}

TEST(Rope, RejectsBadRotaryDims) {
  std::vector<float> x(2 * 8), out(2 * 8), f(8, 0.5f);
  EXPECT_THROW(cpu::rope_forward(out.data(), x.data(), 1, 2, 1, 8, 7, 0, f.data()), Error);   // odd
  EXPECT_THROW(cpu::rope_forward(out.data(), x.data(), 1, 2, 1, 8, 10, 0, f.data()), Error);  // > hd
  EXPECT_THROW(cpu::rope_backward(out.data(), x.data(), 1, 2, 1, 8, 7, 0, f.data()), Error);
  EXPECT_THROW(cpu::rope_forward(out.data(), x.data(), 1, 2, 1, 8, 8, 0, nullptr), Error);    // no table
  // rot = 0 rotates nothing and needs no table.
  x = st::randn(16, 3);
  cpu::rope_forward(out.data(), x.data(), 1, 2, 1, 8, 0, 5, nullptr);
  expect_close(out, x, 0, 0, "rot = 0 is the identity");
}

// ---- inverse-frequency tables ----

namespace {

// transformers' llama3 formula (modeling_rope_utils._compute_llama3_parameters), in double.
std::vector<double> ref_llama3(const std::vector<float>& base, double factor, double lo, double hi, double old) {
  std::vector<double> out;
  for (float f : base) {
    const double inv = f, wavelen = 2 * M_PI / inv;
    double v = wavelen > old / lo ? inv / factor : inv;
    if (!(wavelen < old / hi) && !(wavelen > old / lo)) {
      const double s = (old / wavelen - lo) / (hi - lo);
      v = (1 - s) * v / factor + s * v;
    }
    out.push_back(v);
  }
  return out;
}

}  // namespace

TEST(RopeFreq, DefaultLinearLlama3Tables) {
  const int64_t rot = 64;
  auto d = rope_default_inv_freq(rot, 500000.0f);
  ASSERT_EQ(d.size(), 32u);
  std::vector<double> want;
  for (int64_t i = 0; i < rot / 2; ++i) want.push_back(std::pow(500000.0, -2.0 * double(i) / double(rot)));
  expect_close(d, want, 0, 3e-7, "default vs double");  // fp32 as transformers computes it
  EXPECT_EQ(d[0], 1.0f);

  AttentionConfig a;
  a.rope_theta = 500000.0f;
  EXPECT_EQ(rope_inv_freq(a, rot), d);  // rope_type default
  a.rope_type = "linear";
  a.rope_factor = 4.0f;
  auto lin = rope_inv_freq(a, rot);
  std::vector<double> lin_want;
  for (float f : d) lin_want.push_back(double(f) / 4.0);
  expect_close(lin, lin_want, 0, 1e-7, "linear = default / factor");

  // Llama-3.1's parameters, with the original context small enough that all three regimes occur
  // (wavelengths 2 pi .. 2 pi * 500000^(31/32) ~ 1.9e6).
  a.rope_type = "llama3";
  a.rope_factor = 8.0f;
  a.rope_low_freq_factor = 1.0f;
  a.rope_high_freq_factor = 4.0f;
  a.rope_original_max_positions = 8192;
  auto l3 = rope_inv_freq(a, rot);
  auto l3_want = ref_llama3(d, 8, 1, 4, 8192);
  expect_close(l3, l3_want, 0, 1e-6, "llama3 vs double formula");
  int kept = 0, divided = 0, blended = 0;
  for (size_t i = 0; i < d.size(); ++i) {
    if (l3[i] == d[i]) ++kept;
    else if (std::abs(double(l3[i]) - double(d[i]) / 8) <= 1e-7 * d[i]) ++divided;
    else ++blended;
  }
  std::printf("  llama3 regimes: kept %d, divided %d, blended %d\n", kept, divided, blended);
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(blended, 0);
}

TEST(RopeFreq, RefusesUnsupportedTypesByName) {
  AttentionConfig a;
  for (const char* t : {"dynamic", "yarn", "longrope", "ntk"}) {
    a.rope_type = t;
    try {
      rope_inv_freq(a, 16);
      ADD_FAILURE() << t << " accepted";
    } catch (const InputError& e) {
      const std::string m = e.what();
      std::printf("  %s\n", m.c_str());
      EXPECT_NE(m.find(std::string("'") + t + "'"), std::string::npos) << m;
      EXPECT_NE(m.find("default, linear, llama3"), std::string::npos) << m;
    }
  }
  a.rope_type = "linear";
  a.rope_factor = 0;
  EXPECT_THROW(rope_inv_freq(a, 16), InputError);
  a.rope_type = "llama3";
  a.rope_factor = 8;
  a.rope_low_freq_factor = 4;
  a.rope_high_freq_factor = 4;  // no blend interval
  EXPECT_THROW(rope_inv_freq(a, 16), InputError);
}

TEST(RopeFreq, ConfigKeys) {
  const std::string base = "model: {d_model: 64, pattern: '*', attention: {heads: 4, ";
  auto parse = [&](const std::string& attn) { return parse_config(base + attn + "}}\n", "cfg.yaml").model; };
  // Defaults: RoPE on the whole head with the default frequencies.
  ModelConfig m = parse("kv_heads: 2");
  EXPECT_TRUE(m.attention.rope);
  EXPECT_EQ(m.attention.rope_dims, 16);  // resolved to head_dim
  EXPECT_EQ(m.attention.rope_type, "default");
  m = parse("rope_type: llama3, rope_factor: 8, rope_low_freq_factor: 1, rope_high_freq_factor: 4, "
            "rope_original_max_positions: 8192, rope_dims: 8");
  EXPECT_EQ(m.attention.rope_type, "llama3");
  EXPECT_EQ(m.attention.rope_dims, 8);
  EXPECT_EQ(m.attention.rope_original_max_positions, 8192);
  // No RoPE: an odd head_dim is fine then.
  EXPECT_NO_THROW(parse("head_dim: 7, rope: false"));
  struct Bad {
    std::string attn;
    std::vector<std::string> want;
  };
  const Bad bad[] = {
      {"rope_type: yarn", {"cfg.yaml", "model.attention.rope_type", "'yarn'", "default, linear, llama3", "does not implement"}},
      {"rope_type: dynamic", {"'dynamic'", "default, linear, llama3"}},
      {"rope_type: longrope", {"'longrope'", "default, linear, llama3"}},
      {"rope_dims: 7", {"model.attention.rope_dims=7", "even"}},
      {"rope_dims: 18", {"model.attention.rope_dims=18", "at most head_dim = 16"}},
      {"head_dim: 7", {"head_dim = 7 is odd"}},
      {"rope_type: linear, rope_factor: 0", {"model.attention.rope_factor", "> 0"}},
      {"rope_type: llama3, rope_low_freq_factor: 4, rope_high_freq_factor: 2", {"model.attention.rope_high_freq_factor=2", "must exceed"}},
  };
  for (const Bad& b : bad) {
    try {
      parse(b.attn);
      ADD_FAILURE() << b.attn << " accepted";
    } catch (const InputError& e) {
      const std::string m = e.what();
      std::printf("  %s\n", m.c_str());
      for (const auto& w : b.want) EXPECT_NE(m.find(w), std::string::npos) << "'" << w << "' not in: " << m;
    }
  }
}
