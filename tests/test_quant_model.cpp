// Weight-only int8 / int4 models at inference (models/quantize.h, layers/quant_linear.h): a
// quantised model computes what an fp32 model holding the dequantised weights computes (forward,
// prefill-sized and decode-sized products, cached decode steps), for every block kind; it stays near
// the fp32 model; training it is refused; a quantised checkpoint round-trips bit-exactly through
// save / load_model and a corrupt or mismatched one is refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "core/arena.h"
#include "core/error.h"
#include "load/model_loader.h"
#include "model_testing.h"
#include "models/quantize.h"
#include "temp_dir.h"
#include "testing.h"
#include "train/checkpoint.h"
#include "train/config_load.h"

using namespace strata;
namespace st = strata::testing;

namespace {

std::vector<float> logits_of(Model& m, const std::vector<int32_t>& ids) {
  Arena arena;
  Ctx ctx{Device::cpu, &arena, false};
  std::vector<float> out(ids.size() * size_t(m.vocab()));
  m.forward_logits(ctx, out.data(), ids.data(), 1, int64_t(ids.size()), nullptr);
  return out;
}

std::vector<float> decoded_logits(Model& m, const std::vector<int32_t>& ids) {
  Arena arena;
  ModelCache cache = m.allocate_cache(1, int64_t(ids.size()));
  const size_t V = size_t(m.vocab());
  std::vector<float> out(ids.size() * V);
  for (size_t t = 0; t < ids.size(); ++t) {
    arena.reset();
    Ctx ctx{Device::cpu, &arena, false};
    m.step(ctx, out.data() + t * V, &ids[t], cache);
  }
  return out;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(double(a[i]) - double(b[i])));
  return d;
}

struct Case {
  std::string pattern;
  int mamba_version;
  std::string attention;
};

class QuantModel : public ::testing::TestWithParam<std::tuple<Case, int>> {};

TEST_P(QuantModel, ComputesWhatTheDequantisedFp32ModelComputes) {
  const auto& [c, bits] = GetParam();
  const ModelConfig cfg = st::tiny_model(c.pattern, c.mamba_version, c.attention);
  Model fp32(cfg, 3);
  Model q(cfg, 3);
  quantize_model(q, bits);
  ASSERT_NE(q.quantized(), nullptr);
  EXPECT_GT(q.quantized()->count(), 0);
  // The reference: an fp32 model whose weights are the quantised model's dequantised values.
  Model ref(cfg, Model::Uninitialised{});
  ref.params().set_flat_from_host(q.params().flat());
  for (int64_t T : {5, 13}) {  // T = 5: the GEMV path (M < 8); 13: dequantised tiles + sgemm
    const auto ids = st::random_tokens(T, 100 + uint64_t(T));
    const auto lq = logits_of(q, ids), lr = logits_of(ref, ids), lf = logits_of(fp32, ids);
    const auto dq = decoded_logits(q, ids);
    double scale = 0;
    for (float v : lf) scale = std::max(scale, double(std::fabs(v)));
    const double d_ref = max_abs_diff(lq, lr), d_dec = max_abs_diff(dq, lr), d_fp32 = max_abs_diff(lq, lf);
    std::printf("%s mamba%d %s int%d T=%ld: |q - dequantised fp32| %.3g, |decode - dequantised| %.3g, |q - fp32| %.3g "
                "(max |logit| %.3g)\n",
                c.pattern.c_str(), c.mamba_version, c.attention.c_str(), bits, long(T), d_ref, d_dec, d_fp32, scale);
    EXPECT_LE(d_ref, 2e-4 * (1 + scale));
    EXPECT_LE(d_dec, 2e-4 * (1 + scale));
    // Near the fp32 model: int8 keeps ~2 decimal digits of every weight, int4 about one.
    EXPECT_LE(d_fp32, (bits == 8 ? 0.05 : 0.5) * (1 + scale));
  }
}

// Int8 activations (set_activations): the same quantised weights, the activations rounded to int8
// per 32 inputs. Decode steps (M = 1 products) match the forward (M = T) as with fp32 activations:
// the kernel's rows do not depend on M. Near the fp32-activation model: each product moves by at
// most sum_k |w_k| s_x / 2.
TEST_P(QuantModel, Int8ActivationsDecodeMatchesForwardAndStayNearFp32Activations) {
  const auto& [c, bits] = GetParam();
  const ModelConfig cfg = st::tiny_model(c.pattern, c.mamba_version, c.attention);
  Model q(cfg, 3), q8(cfg, 3);
  quantize_model(q, bits);
  quantize_model(q8, bits);
  set_activations(q8, "int8");
  ASSERT_TRUE(q8.quantized()->int8_activations());
  const auto ids = st::random_tokens(13, 113);
  const auto l32 = logits_of(q, ids), l8 = logits_of(q8, ids), d8 = decoded_logits(q8, ids);
  double scale = 0;
  for (float v : l32) scale = std::max(scale, double(std::fabs(v)));
  const double d_dec = max_abs_diff(d8, l8), d_act = max_abs_diff(l8, l32);
  std::printf("%s mamba%d %s int%d, int8 activations: |decode - forward| %.3g, |int8 - fp32 activations| %.3g "
              "(max |logit| %.3g)\n",
              c.pattern.c_str(), c.mamba_version, c.attention.c_str(), bits, d_dec, d_act, scale);
  EXPECT_LE(d_dec, 2e-4 * (1 + scale));
  EXPECT_GT(d_act, 0.0) << "int8 activations changed nothing: the mode did not reach the kernels";
  EXPECT_LE(d_act, 0.05 * (1 + scale));
}

INSTANTIATE_TEST_SUITE_P(Blocks, QuantModel,
                         ::testing::Combine(::testing::Values(Case{"*-", 2, "gqa"}, Case{"M", 1, "gqa"},
                                                              Case{"M*", 2, "gqa"}, Case{"*E", 2, "mla"}),
                                            ::testing::Values(8, 4)));

TEST(QuantModelRules, WhichWeightsAreQuantised) {
  Model m(st::tiny_model("M*E", 1), 1);
  const auto ts = quantize_weights(m.params(), 4);
  int fallback = 0;
  for (const auto& t : ts) {
    EXPECT_NE(t.name.find("_proj"), std::string::npos) << t.name;
    fallback += t.bits == 8;
    if (t.bits == 8) {
      EXPECT_NE(t.K % kQuantGroup, 0) << t.name << " fell back to int8 without a reason";
    }
  }
  EXPECT_GT(fallback, 0) << "dt_proj (K = dt_rank = 2) and the 24-wide experts' down_proj stay int8 at 4 bits";
  for (const auto& p : m.params().infos()) {
    const bool q = std::any_of(ts.begin(), ts.end(), [&](const QuantTensor& t) { return t.name == p.name; });
    if (p.name.find("embed") != std::string::npos || p.name.find("lm_head") != std::string::npos ||
        p.name.find(".gate.weight") != std::string::npos || p.name.find("norm") != std::string::npos) {
      EXPECT_FALSE(q) << p.name << " should stay fp32";
    }
  }
  EXPECT_THROW(quantize_weights(m.params(), 3), InputError);
}

// --quantize-head: the matrix the head product reads (lm_head.weight, or the tied embedding), at
// int8 whatever the bits; the model still decodes what it computes in the forward, near fp32.
TEST(QuantModelRules, TheHeadOnRequestAtInt8) {
  for (bool tied : {true, false}) {
    ModelConfig cfg = st::tiny_model("M*-", 2);
    cfg.tie_embeddings = tied;
    Model fp32(cfg, 3), q(cfg, 3);
    const std::string head = tied ? "embed_tokens.weight" : "lm_head.weight";
    const auto ts = quantize_weights(q.params(), 4, true);
    const auto it = std::find_if(ts.begin(), ts.end(), [&](const QuantTensor& t) { return t.name == head; });
    ASSERT_NE(it, ts.end()) << head << " not quantised (tied " << tied << ")";
    EXPECT_EQ(it->bits, 8);
    if (!tied) {
      EXPECT_TRUE(std::none_of(ts.begin(), ts.end(), [](const QuantTensor& t) { return t.name == "embed_tokens.weight"; }))
          << "an untied embedding is a lookup, not a product: nothing to gain";
    }
    const auto plain = quantize_weights(q.params(), 4);
    EXPECT_TRUE(std::none_of(plain.begin(), plain.end(), [&](const QuantTensor& t) { return t.name == head; }))
        << "the head is quantised only on request";
    apply_quantized(q, ts);
    const auto ids = st::random_tokens(9, 7);
    const auto lq = logits_of(q, ids), dq = decoded_logits(q, ids), lf = logits_of(fp32, ids);
    double scale = 0;
    for (float v : lf) scale = std::max(scale, double(std::fabs(v)));
    EXPECT_LE(max_abs_diff(dq, lq), 2e-4 * (1 + scale)) << "tied " << tied;
    EXPECT_LE(max_abs_diff(lq, lf), 0.5 * (1 + scale)) << "tied " << tied;
  }
}

TEST(QuantModelRules, Int8ActivationsNeedQuantisedWeights) {
  Model m(st::tiny_model("*-", 2), 3);
  EXPECT_THROW(set_activations(m, "int8"), InputError);
  set_activations(m, "fp32");  // the default: nothing to do
  quantize_model(m, 8);
  EXPECT_THROW(set_activations(m, "int4"), InputError);
  set_activations(m, "int8");
  EXPECT_TRUE(m.quantized()->int8_activations());
  set_activations(m, "fp32");
  EXPECT_FALSE(m.quantized()->int8_activations());
}

TEST(QuantModelRules, TrainingAQuantisedModelIsRefused) {
  Model m(st::tiny_model("*-"), 1);
  quantize_model(m, 8);
  Arena arena;
  Ctx ctx{Device::cpu, &arena, true};
  const auto ids = st::random_tokens(8, 1);
  try {
    m.forward_loss(ctx, ids.data(), ids.data(), 1, 8);
    FAIL() << "forward_loss of a quantised model ran";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("inference only"), std::string::npos) << e.what();
  }
  EXPECT_THROW(quantize_model(m, 4), InputError);  // quantised twice
}

// A quantised checkpoint as strata quantize writes it: the quantised weights in /quant, the rest in /params.
void save_quantised(const Model& m, const ModelConfig& cfg, const std::vector<QuantTensor>& ts, const std::string& path) {
  CheckpointView v;
  Config full;
  full.model = cfg;
  v.config_yaml = to_yaml(full);
  const ParamStore& ps = m.params();
  for (const auto& p : ps.infos())
    if (std::none_of(ts.begin(), ts.end(), [&](const QuantTensor& t) { return t.name == p.name; }))
      v.params.push_back({p.name, p.shape, ps.flat() + p.offset});
  v.quant = &ts;
  save_checkpoint(path, v);
}

TEST(QuantCheckpoint, RoundTripsAndRefusesCorruptOrMismatchedFiles) {
  st::TempDir dir("quant_ckpt");
  const ModelConfig cfg = st::tiny_model("M*-", 2);
  for (int bits : {8, 4}) {
    Model m(cfg, 5);
    const auto ts = quantize_weights(m.params(), bits);
    const std::string path = dir / fmt::format("q{}.h5", bits);
    save_quantised(m, cfg, ts, path);
    Model mem(cfg, 5);
    apply_quantized(mem, ts);
    LoadedModel lm = load_model(path);
    ASSERT_NE(lm.model->quantized(), nullptr);
    const auto ids = st::random_tokens(6, 9);
    EXPECT_EQ(logits_of(*lm.model, ids), logits_of(mem, ids)) << "int" << bits << ": load changed the model";
    EXPECT_NO_THROW(verify_checkpoint(path));

    // One flipped byte inside a quantised weight's bytes: the checksum names the dataset.
    std::string bytes = st::read_bytes(path);
    const std::string needle(reinterpret_cast<const char*>(ts[0].q.data()), 24);
    const size_t at = bytes.find(needle);
    ASSERT_NE(at, std::string::npos);
    bytes[at + 5] = char(bytes[at + 5] ^ 0x10);
    const std::string bad = dir / "corrupt.h5";
    std::ofstream(bad, std::ios::binary) << bytes;
    try {
      load_model(bad);
      FAIL() << "a corrupt quantised checkpoint loaded";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("checksum mismatch in dataset '/quant/"), std::string::npos) << e.what();
    }
  }
  // A quantised weight that does not fit the model its config describes.
  Model m(cfg, 5);
  auto ts = quantize_weights(m.params(), 8);
  ts[0].N -= 1;
  ts[0].q.resize(size_t(ts[0].N * ts[0].K));
  ts[0].scales.resize(size_t(ts[0].N));
  const std::string path = dir / "mismatch.h5";
  save_quantised(m, cfg, ts, path);
  try {
    load_model(path);
    FAIL() << "a mismatched quantised checkpoint loaded";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("but the model's parameter is"), std::string::npos) << e.what();
  }
}

}  // namespace
