// `strata quantize`, `strata eval-ppl` and `--quantize` at load, end to end on a tiny trained hybrid
// (Mamba-2, attention, MoE, MLP): the quantised checkpoints are smaller, generate / score / eval-ppl
// load them, int8 perplexity stays near fp32, and the misuses are refused with a clear message.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <string>

#include "cli.h"

namespace fs = std::filesystem;
using namespace strata::testing;

namespace {

double field(const std::string& out, const std::string& name) {
  std::smatch m;
  const std::regex re(name + "=([0-9.eE+-]+)");
  if (!std::regex_search(out, m, re)) return -1;
  return std::stod(m[1]);
}

TEST(CliQuantize, QuantiseLoadScoreAndRefuse) {
  const std::string d = scratch_dir("quantize");
  write_text(d + "/a.yaml", tiny_config("", 10));
  ASSERT_EQ(run("train a.yaml train.run_dir=r --quiet", d).code, 0);

  auto q8 = run("quantize r -o q8.h5 --bits 8", d);
  ASSERT_EQ(q8.code, 0) << q8.out;
  EXPECT_NE(q8.out.find("at int8"), std::string::npos) << q8.out;
  auto q4 = run("quantize r -o q4.h5 --bits 4", d);
  ASSERT_EQ(q4.code, 0) << q4.out;
  EXPECT_NE(q4.out.find("at int8: input size not a multiple of 32"), std::string::npos) << "the 48- and 24-wide down_proj stay int8: " << q4.out;
  EXPECT_LT(fs::file_size(d + "/q4.h5"), fs::file_size(d + "/q8.h5"));

  auto gen = run("generate --ckpt q4.h5 --prompt 'the cat' --max-tokens 8 --temperature 0", d);
  EXPECT_EQ(gen.code, 0) << gen.out;
  auto sc = run("score --ckpt r --quantize 8 --text-file data.txt --out s.npy", d);
  EXPECT_EQ(sc.code, 0) << sc.out;

  const auto fp = run("eval-ppl --ckpt r --text-file data.txt --context 24 --max-tokens 2000 --quiet", d);
  const auto p8 = run("eval-ppl --ckpt q8.h5 --text-file data.txt --context 24 --max-tokens 2000 --decode-tokens 4 --quiet", d);
  const auto p4 = run("eval-ppl --ckpt r --quantize 4 --text-file data.txt --context 24 --max-tokens 2000 --quiet", d);
  const auto a8 = run("eval-ppl --ckpt q8.h5 --activations int8 --text-file data.txt --context 24 --max-tokens 2000 --quiet", d);
  ASSERT_EQ(fp.code, 0) << fp.out;
  ASSERT_EQ(p8.code, 0) << p8.out;
  ASSERT_EQ(p4.code, 0) << p4.out;
  ASSERT_EQ(a8.code, 0) << a8.out;
  EXPECT_NE(a8.out.find("weights=int8 head=fp32 activations=int8"), std::string::npos) << a8.out;
  auto qh = run("quantize r -o qh.h5 --bits 8 --quantize-head", d);
  ASSERT_EQ(qh.code, 0) << qh.out;
  EXPECT_LT(fs::file_size(d + "/qh.h5"), fs::file_size(d + "/q8.h5"));
  const auto ph = run("eval-ppl --ckpt qh.h5 --text-file data.txt --context 24 --max-tokens 2000 --quiet", d);
  ASSERT_EQ(ph.code, 0) << ph.out;
  EXPECT_NE(ph.out.find("head=int8"), std::string::npos) << ph.out;
  EXPECT_LT(field(ph.out, "weight_bytes"), field(p8.out, "weight_bytes"));
  EXPECT_NEAR(field(ph.out, "ppl"), field(p8.out, "ppl"), 0.02 * field(p8.out, "ppl"));
  const auto hl = run("eval-ppl --ckpt r --quantize 8 --quantize-head --text-file data.txt --context 24 --max-tokens 2000 --quiet", d);
  EXPECT_EQ(field(hl.out, "ppl"), field(ph.out, "ppl")) << "at load and from the file: the same model\n" << hl.out;
  auto head_alone = run("generate --ckpt r --quantize-head --max-tokens 2", d);
  EXPECT_EQ(head_alone.code, 2) << head_alone.out;
  EXPECT_NE(head_alone.out.find("--quantize-head goes with --quantize"), std::string::npos) << head_alone.out;
  EXPECT_NE(p8.out.find("activations=fp32"), std::string::npos) << p8.out;
  EXPECT_NEAR(field(a8.out, "ppl"), field(p8.out, "ppl"), 0.02 * field(p8.out, "ppl"));
  EXPECT_NE(field(a8.out, "ppl"), field(p8.out, "ppl")) << "int8 activations changed nothing";
  auto fp_acts = run("generate --ckpt r --activations int8 --max-tokens 2", d);
  EXPECT_EQ(fp_acts.code, 2) << fp_acts.out;
  EXPECT_NE(fp_acts.out.find("int8 activations need quantised weights"), std::string::npos) << fp_acts.out;
  EXPECT_NE(p8.out.find("weights=int8"), std::string::npos) << p8.out;
  EXPECT_NE(p4.out.find("weights=int4"), std::string::npos) << p4.out;
  const double ppl = field(fp.out, "ppl"), ppl8 = field(p8.out, "ppl"), ppl4 = field(p4.out, "ppl");
  std::printf("ppl fp32 %.4f, int8 %.4f, int4 %.4f\n", ppl, ppl8, ppl4);
  EXPECT_GT(ppl, 1.0);
  EXPECT_NEAR(ppl8, ppl, 0.01 * ppl);
  EXPECT_NEAR(ppl4, ppl, 0.1 * ppl);
  EXPECT_LT(field(p8.out, "weight_bytes"), field(fp.out, "weight_bytes"));
  EXPECT_GT(field(p8.out, "decode_tok_s"), 0);

  auto again = run("quantize q8.h5 -o q88.h5", d);
  EXPECT_EQ(again.code, 2) << again.out;
  EXPECT_NE(again.out.find("quantised already"), std::string::npos) << again.out;
  auto twice = run("generate --ckpt q8.h5 --quantize 4 --max-tokens 2", d);
  EXPECT_EQ(twice.code, 2) << twice.out;
  EXPECT_NE(twice.out.find("quantised already"), std::string::npos) << twice.out;
  auto bits = run("quantize r -o x.h5 --bits 3", d);
  EXPECT_NE(bits.code, 0);
  EXPECT_NE(bits.out.find("--bits"), std::string::npos) << bits.out;
  auto trunc = run_raw("head -c 5000 q8.h5 > cut.h5", d);
  auto cut = run("generate --ckpt cut.h5 --max-tokens 2", d);
  EXPECT_EQ(cut.code, 2) << cut.out;
  for (const char* sub : {"quantize --help", "eval-ppl --help"}) {
    auto r = run(sub, d);
    EXPECT_EQ(r.code, 0) << sub << r.out;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << sub << r.out;
  }
}

}  // namespace
