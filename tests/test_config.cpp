// Strict YAML config loading: every error names file, line (or the command-line override), key and
// what would be accepted; Hydra-style overrides of every kind; exact round trip through to_yaml.
#include <gtest/gtest.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>

#include "core/error.h"
#include "input_error_testing.h"
#include "train/config_load.h"

namespace fs = std::filesystem;
using strata::Config;
using strata::InputError;

namespace {

using strata::testing::error_of;
using strata::testing::expect_has;

// A config touching every section; line numbers are looked up in the text, never hard-coded.
const char* kBase =
    "# test config\n"
    "model:\n"
    "  d_model: 96\n"
    "  pattern: \"M*-E\"\n"
    "  repeat: 2\n"
    "  attention:\n"
    "    heads: 4\n"
    "    kv_heads: 2\n"
    "  mamba: {version: 2, d_state: 8, head_dim: 16, chunk: 8}\n"
    "  mlp: {hidden: 128}\n"
    "  moe:\n"
    "    experts: 4\n"
    "    top_k: 2\n"
    "train: {steps: 50, batch: 3, seq: 24, seed: 7}\n"
    "optim:\n"
    "  lr: 3.0e-3\n"
    "  schedule: constant\n"
    "data: {kind: text, path: data.txt, val_fraction: 0.1}\n";

// 1-based line of the first line containing `needle` (the test's own independent bookkeeping).
int line_of(const std::string& text, const std::string& needle) {
  int line = 1;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (text.substr(start, end - start).find(needle) != std::string::npos) return line;
    ++line;
    start = end + 1;
  }
  ADD_FAILURE() << "'" << needle << "' not in the test YAML";
  return -1;
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  size_t p = s.find(from);
  EXPECT_NE(p, std::string::npos) << from;
  if (p != std::string::npos) s.replace(p, from.size(), to);
  return s;
}


std::string parse_error(const std::string& yaml, const std::vector<std::string>& ov = {}) {
  return error_of([&] { strata::parse_config(yaml, "cfg.yaml", ov); });
}

// "cfg.yaml:<line of needle>", as a location inside a message, and with ':' as a message prefix.
std::string loc(const std::string& yaml, const std::string& needle) { return "cfg.yaml:" + std::to_string(line_of(yaml, needle)); }
std::string at_line(const std::string& yaml, const std::string& needle) { return loc(yaml, needle) + ":"; }

Config resolved_defaults() {
  Config c;
  strata::resolve(c.model);
  return c;
}

void expect_same(const Config& a, const Config& b) {
  auto d = strata::config_diff(a, b);
  for (auto& s : d) ADD_FAILURE() << "differs: " << s;
}

fs::path scratch() {
  fs::path d = fs::temp_directory_path() / ("strata_test_config_" + std::to_string(getpid()));
  fs::create_directories(d);
  return d;
}

void write_file(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

}  // namespace

// --- valid input -------------------------------------------------------------------------------

TEST(Config, EmptyTextGivesResolvedDefaults) {
  Config c = strata::parse_config("", "empty.yaml");
  expect_same(c, resolved_defaults());
  EXPECT_EQ(c.source_path, "empty.yaml");
  expect_same(strata::parse_config("# only a comment\n", "c.yaml"), resolved_defaults());
}

TEST(Config, ValuesLandInTheirFieldsAndDerivedSizesResolve) {
  Config c = strata::parse_config(kBase, "cfg.yaml");
  EXPECT_EQ(c.model.d_model, 96);
  EXPECT_EQ(c.model.pattern, "M*-E");
  EXPECT_EQ(c.model.repeat, 2);
  EXPECT_EQ(c.model.attention.heads, 4);
  EXPECT_EQ(c.model.attention.kv_heads, 2);
  EXPECT_EQ(c.model.attention.head_dim, 96 / 4);  // derived
  EXPECT_EQ(c.model.mamba.version, 2);
  EXPECT_EQ(c.model.mamba.d_state, 8);
  EXPECT_EQ(c.model.mamba.head_dim, 16);
  EXPECT_EQ(c.model.mamba.chunk, 8);
  EXPECT_EQ(c.model.mamba.dt_rank, (96 + 15) / 16);  // derived
  EXPECT_EQ(c.model.mlp.hidden, 128);
  EXPECT_EQ(c.model.moe.hidden, 128);  // derived from mlp.hidden
  EXPECT_EQ(c.model.moe.experts, 4);
  EXPECT_EQ(c.train.steps, 50);
  EXPECT_EQ(c.train.batch, 3);
  EXPECT_EQ(c.train.seq, 24);
  EXPECT_EQ(c.train.seed, 7u);
  EXPECT_EQ(c.optim.lr, 3.0e-3f);
  EXPECT_EQ(c.optim.schedule, "constant");
  EXPECT_EQ(c.data.path, "data.txt");
  EXPECT_EQ(c.data.val_fraction, 0.1f);
  // untouched keys keep their defaults
  EXPECT_EQ(c.optim.beta2, Config{}.optim.beta2);
  EXPECT_EQ(c.train.device, "cpu");
}

TEST(Config, ScalarSpellings) {
  Config c = strata::parse_config(
      "model: {tie_embeddings: False, d_model: +64, norm_eps: 1e-6, mamba: {conv_bias: TRUE, dt_max: .5}, attention: {heads: 2}}\n"
      "train: {seed: 18446744073709551615, steps: 10000000000, run_dir: }\n"
      "optim: {lr: \"2e-4\", clip: 0}\n",
      "s.yaml");
  EXPECT_FALSE(c.model.tie_embeddings);
  EXPECT_EQ(c.model.d_model, 64);
  EXPECT_EQ(c.model.norm_eps, 1e-6f);
  EXPECT_TRUE(c.model.mamba.conv_bias);
  EXPECT_EQ(c.model.mamba.dt_max, 0.5f);
  EXPECT_EQ(c.train.seed, UINT64_MAX);
  EXPECT_EQ(c.train.steps, int64_t(10000000000));
  EXPECT_EQ(c.train.run_dir, "");
  EXPECT_EQ(c.optim.lr, 2e-4f);
  EXPECT_EQ(c.optim.clip, 0.0f);
}

TEST(Config, LoadFileSetsSourcePath) {
  fs::path p = scratch() / "exp.yaml";
  write_file(p, kBase);
  Config c = strata::load_config(p.string(), {"train.steps=9"});
  EXPECT_EQ(c.source_path, p.string());
  EXPECT_EQ(c.train.steps, 9);
  expect_same(c, strata::parse_config(kBase, "x", {"train.steps=9"}));
  fs::remove_all(scratch());
}

// --- file errors ---------------------------------------------------------------------------------

TEST(ConfigErrors, MissingFileAndDirectory) {
  std::string missing = (scratch() / "x_missing.yaml").string();
  expect_has(error_of([&] { strata::load_config(missing); }), {"config file '" + missing + "' not found"});
  expect_has(error_of([&] { strata::load_config(scratch().string()); }), {scratch().string(), "directory"});
  fs::remove_all(scratch());
}

TEST(ConfigErrors, YamlSyntaxNamesTheLine) {
  std::string y = replace(kBase, "  repeat: 2\n", "  repeat: [2\n");
  std::string m = parse_error(y);
  expect_has(m, {"cfg.yaml:", "YAML syntax error"});
  // yaml-cpp reports an unclosed flow sequence where it gives up; just require a plausible line.
  int reported = std::atoi(m.c_str() + std::strlen("cfg.yaml:"));
  EXPECT_GE(reported, line_of(y, "repeat: [2"));

  std::string bad_map = "model:\n  d_model: 64\n   pattern: \"M\"\n  - x\n";
  expect_has(parse_error(bad_map), {"cfg.yaml:", "YAML syntax error"});

  // The classic trap: an unquoted pattern starting with '*' is a YAML alias.
  std::string alias = replace(kBase, "pattern: \"M*-E\"", "pattern: *-E");
  expect_has(parse_error(alias), {at_line(alias, "pattern"), "alias", "quote"});
}

TEST(ConfigErrors, StructureErrors) {
  expect_has(parse_error("- model\n- train\n"), {"cfg.yaml:1", "mapping", "model", "train", "a list"});
  std::string two_docs = std::string(kBase) + "---\nmodel: {d_model: 8}\n";
  expect_has(parse_error(two_docs), {"cfg.yaml", "2 YAML documents"});
  std::string dup_key = replace(kBase, "  repeat: 2\n", "  repeat: 2\n  d_model: 64\n");
  expect_has(parse_error(dup_key), {at_line(dup_key, "d_model: 64"), "duplicate key 'model.d_model'", "first at " + loc(dup_key, "d_model: 96")});
  std::string dup_sec = std::string(kBase) + "train: {batch: 4}\n";
  expect_has(parse_error(dup_sec), {at_line(dup_sec, "train: {batch: 4}"), "duplicate section 'train'", "first at " + loc(dup_sec, "train: {steps")});
  std::string scalar_sec = replace(kBase, "  mlp: {hidden: 128}", "  mlp: 128");
  expect_has(parse_error(scalar_sec), {at_line(scalar_sec, "mlp: 128"), "'model.mlp' is a section", "hidden", "'128'"});
  std::string dotted = std::string(kBase) + "model.d_model: 64\n";
  expect_has(parse_error(dotted), {at_line(dotted, "model.d_model: 64"), "unknown key 'model.d_model'", "nest"});
  // An empty section is fine: all its keys keep their defaults.
  Config c = strata::parse_config(std::string(kBase) + "\n", "cfg.yaml");
  Config e = strata::parse_config(replace(kBase, "  mlp: {hidden: 128}\n", "  mlp:\n"), "cfg.yaml");
  EXPECT_EQ(e.model.mlp.hidden, 256);  // derived: 8/3 * 96 = 256, already a multiple of 64
  EXPECT_EQ(c.model.mlp.hidden, 128);
}

TEST(ConfigErrors, UnknownKeyNamesLineValidKeysAndSuggestion) {
  std::string y = replace(kBase, "  attention:", "  atention:");
  expect_has(parse_error(y), {at_line(y, "atention"), "unknown key 'model.atention'",
                              "valid keys in 'model': attention, d_model, init_std, mamba, mlp, moe, norm_eps, pattern, repeat, "
                              "tie_embeddings, vocab, vocab_size",
                              "(did you mean 'attention'?)"});
  y = replace(kBase, "d_state: 8", "dstate: 8");
  expect_has(parse_error(y), {at_line(y, "dstate"), "unknown key 'model.mamba.dstate'", "valid keys in 'model.mamba'", "d_state",
                              "did you mean 'd_state'"});
  y = replace(kBase, "optim:", "optimizer:");
  expect_has(parse_error(y), {at_line(y, "optimizer:"), "unknown key 'optimizer'", "valid top-level keys: data, model, optim, robot, train"});
  // A key in the wrong section points to where it belongs.
  y = replace(kBase, "  repeat: 2\n", "  repeat: 2\n  heads: 4\n");
  expect_has(parse_error(y), {at_line(y, "  heads: 4"), "unknown key 'model.heads'", "did you mean 'model.attention.heads'"});
  y = std::string(kBase) + "lr: 1\n";
  expect_has(parse_error(y), {at_line(y, "lr: 1"), "unknown key 'lr'", "'optim.lr'"});
}

TEST(ConfigErrors, WrongTypes) {
  struct Case {
    std::string from, to, key, type, got;
  };
  std::vector<Case> cases = {
      {"d_model: 96", "d_model: abc", "model.d_model", "must be an integer", "'abc'"},
      {"d_model: 96", "d_model: 96.5", "model.d_model", "must be an integer", "'96.5'"},
      {"d_model: 96", "d_model: 99999999999", "model.d_model", "must be an integer within range", "'99999999999'"},
      {"d_model: 96", "d_model: [96]", "model.d_model", "must be an integer", "a list"},
      {"d_model: 96", "d_model:", "model.d_model", "must be an integer", "nothing"},
      {"lr: 3.0e-3", "lr: fast", "optim.lr", "must be a number", "'fast'"},
      {"lr: 3.0e-3", "lr: 1e50", "optim.lr", "must be a number within range", "'1e50'"},
      {"lr: 3.0e-3", "lr: .nan", "optim.lr", "must be a number", "'.nan'"},
      {"repeat: 2", "repeat: 2\n  tie_embeddings: maybe", "model.tie_embeddings", "must be a boolean (true or false)", "'maybe'"},
      {"pattern: \"M*-E\"", "pattern: {a: 1}", "model.pattern", "must be a string", "a mapping"},
      {"seed: 7", "seed: -7", "train.seed", "must be a non-negative integer", "'-7'"},
      {"steps: 50", "steps: 5e3", "train.steps", "must be an integer", "'5e3'"},
  };
  for (const auto& c : cases) {
    std::string y = replace(kBase, c.from, c.to);
    std::string needle = c.to.substr(c.to.rfind('\n') + 1);
    needle = needle.substr(needle.find_first_not_of(' '));
    expect_has(parse_error(y), {at_line(y, needle), "'" + c.key + "' " + c.type, "got " + c.got});
  }
  // Sweeps belong to the sweep command; say so.
  expect_has(parse_error(kBase, {"optim.lr=1e-3,3e-4"}), {"command-line override 'optim.lr=1e-3,3e-4'", "must be a number", "sweep"});
}

TEST(ConfigErrors, EnumerationsListAllowedValues) {
  struct Case {
    std::string yaml_extra, key, got;
    std::vector<std::string> allowed;
  };
  std::vector<Case> cases = {
      {"model: {mamba: {version: 3}}", "model.mamba.version", "3", {"1", "2"}},
      {"model: {attention: {kind: mha}}", "model.attention.kind", "mha", {"gqa", "mla"}},
      {"optim: {schedule: linear}", "optim.schedule", "linear", {"cosine", "constant"}},
      {"data: {kind: tokens}", "data.kind", "tokens", {"text"}},
      {"train: {precision: fp16}", "train.precision", "fp16", {"fp32", "bf16"}},
      {"train: {device: tpu}", "train.device", "tpu", {"cpu", "cuda"}},
      {"model: {vocab: tokenizer.json}", "model.vocab", "tokenizer.json", {"bytes", "tokenizer", "ids"}},
  };
  for (const auto& c : cases) {
    std::string y = "# header\n" + c.yaml_extra + "\n";
    std::string m = parse_error(y);
    std::string list;
    for (auto& a : c.allowed) list += (list.empty() ? "" : ", ") + a;
    expect_has(m, {"cfg.yaml:2:", "'" + c.key + "' must be one of: " + list, "got '" + c.got + "'"});
  }
  expect_has(parse_error("model: {vocab: tok.json}\n"), {"strata import hf"});
  expect_has(parse_error("optim: {schedule: Cosine}\n"), {"did you mean 'cosine'"});
  // mamba.version=1 is accepted, and with it the Mamba-2-only sizes are not checked.
  Config c = strata::parse_config("model: {d_model: 40, pattern: M, mamba: {version: 1, head_dim: 7}}\n", "cfg.yaml");
  EXPECT_EQ(c.model.mamba.version, 1);
  EXPECT_EQ(c.model.mamba.dt_rank, 3);
}

// --- impossible shapes ---------------------------------------------------------------------------

TEST(ConfigErrors, AttentionShapes) {
  std::string y = replace(kBase, "heads: 4\n    kv_heads: 2", "heads: 5\n    kv_heads: 1");
  expect_has(parse_error(y), {at_line(y, "heads: 5"), "model.attention.heads=5", "model.d_model=96",
                              "model.d_model: " + loc(y, "d_model")});
  // An explicit head_dim decouples heads from d_model.
  Config c = strata::parse_config(replace(y, "kv_heads: 1", "kv_heads: 1\n    head_dim: 16"), "cfg.yaml");
  EXPECT_EQ(c.model.attention.head_dim, 16);
  y = replace(kBase, "kv_heads: 2", "kv_heads: 3");
  expect_has(parse_error(y), {at_line(y, "kv_heads: 3"), "model.attention.kv_heads=3 does not divide model.attention.heads=4"});
  y = replace(kBase, "kv_heads: 2", "kv_heads: 8");
  expect_has(parse_error(y), {at_line(y, "kv_heads: 8"), "kv_heads=8", "heads=4"});
  y = replace(kBase, "kv_heads: 2", "kv_heads: 2\n    head_dim: 15");
  expect_has(parse_error(y), {at_line(y, "head_dim: 15"), "odd", "RoPE"});
  // Derived odd head_dim: 6 heads of a 90-wide model (mamba's head_dim keeps Mamba-2 consistent).
  y = replace(replace(kBase, "d_model: 96", "d_model: 90"), "heads: 4\n    kv_heads: 2", "heads: 6\n    kv_heads: 2");
  y = replace(y, "head_dim: 16", "head_dim: 20");
  expect_has(parse_error(y), {"odd", "model.d_model=90", "model.attention.heads=6"});
  y = replace(kBase, "heads: 4\n", "heads: 0\n");
  expect_has(parse_error(y), {at_line(y, "heads: 0"), "'model.attention.heads' must be >= 1, got 0"});
}

TEST(ConfigErrors, MoeShapes) {
  std::string y = replace(kBase, "top_k: 2", "top_k: 9");
  expect_has(parse_error(y), {at_line(y, "top_k: 9"), "model.moe.top_k=9 exceeds model.moe.experts=4", "model.moe.experts: " +
                                                                                                         loc(y, "experts: 4")});
  y = replace(kBase, "top_k: 2", "top_k: 0");
  expect_has(parse_error(y), {at_line(y, "top_k: 0"), "'model.moe.top_k' must be >= 1, got 0"});
  y = replace(kBase, "experts: 4", "experts: 0");
  expect_has(parse_error(y), {at_line(y, "experts: 0"), "'model.moe.experts' must be >= 1"});
}

TEST(ConfigErrors, PatternAndRepeat) {
  std::string y = replace(kBase, "\"M*-E\"", "\"M*X\"");
  expect_has(parse_error(y), {at_line(y, "pattern"), "model.pattern='M*X'", "'X' at position 3", "M (Mamba)", "* (attention)",
                              "- (MLP)", "E (MoE)"});
  y = replace(kBase, "\"M*-E\"", "\"M*/MM\"");
  expect_has(parse_error(y), {at_line(y, "pattern"), "'/'", "reserved for multi-token", "not supported yet"});
  y = replace(kBase, "\"M*-E\"", "\"\"");
  expect_has(parse_error(y), {at_line(y, "pattern"), "'model.pattern' is empty"});
  y = replace(kBase, "repeat: 2", "repeat: 0");
  expect_has(parse_error(y), {at_line(y, "repeat: 0"), "'model.repeat' must be >= 1, got 0"});
}

TEST(ConfigErrors, Mamba2Shapes) {
  // expand * d_model = 2 * 96 = 192 is not a multiple of 40.
  std::string y = replace(kBase, "head_dim: 16", "head_dim: 40");
  expect_has(parse_error(y), {at_line(y, "head_dim: 40"), "2 * 96 = 192", "model.mamba.head_dim=40"});
  // 192 / 16 = 12 heads, not divisible by 5 groups.
  y = replace(kBase, "head_dim: 16", "head_dim: 16, ngroups: 5");
  expect_has(parse_error(y), {at_line(y, "ngroups: 5"), "12 heads", "model.mamba.ngroups=5"});
  y = replace(kBase, "d_state: 8", "d_state: 8, d_conv: 0");
  expect_has(parse_error(y), {at_line(y, "d_conv: 0"), "'model.mamba.d_conv' must be >= 1, got 0"});
  y = replace(kBase, "chunk: 8", "chunk: -8");
  expect_has(parse_error(y), {at_line(y, "chunk: -8"), "'model.mamba.chunk' must be >= 1"});
  y = std::string(kBase) + "# tail\n";
  y = replace(y, "d_state: 8", "d_state: 8, dt_min: 0.2, dt_max: 0.1");
  expect_has(parse_error(y), {at_line(y, "dt_max"), "model.mamba.dt_max=0.1 is below model.mamba.dt_min=0.2"});
}

TEST(ConfigErrors, ShapeChecksFollowThePattern) {
  // d_model 72: 2 * 72 = 144 is not a multiple of mamba.head_dim 32, 72 / 5 heads is not whole.
  const std::string body = "model: {d_model: 72, pattern: PAT, attention: {heads: 5, kv_heads: 1}}\n";
  Config c = strata::parse_config(replace(body, "PAT", "\"-E\""), "cfg.yaml");  // neither block used
  EXPECT_EQ(c.model.d_model, 72);
  expect_has(parse_error(replace(body, "PAT", "\"M-\"")), {"cfg.yaml:1:", "2 * 72 = 144", "model.mamba.head_dim=32",
                                                          "model.mamba.head_dim: default", "model.mamba.expand: default"});
  expect_has(parse_error(replace(body, "PAT", "\"*-\"")), {"cfg.yaml:1:", "model.attention.heads=5 does not divide model.d_model=72"});
}

TEST(ConfigErrors, PositiveSizesAndRanges) {
  struct Case {
    std::string yaml, key, want;
  };
  std::vector<Case> cases = {
      {"train: {batch: 0}", "train.batch", ">= 1"},
      {"train: {seq: -1}", "train.seq", ">= 1"},
      {"train: {steps: 0}", "train.steps", ">= 1"},
      {"train: {grad_accum: 0}", "train.grad_accum", ">= 1"},
      {"train: {log_every: 0}", "train.log_every", ">= 1"},
      {"train: {eval_batches: 0}", "train.eval_batches", ">= 1"},
      {"train: {keep_checkpoints: 0}", "train.keep_checkpoints", ">= 1"},
      {"train: {save_every: -1}", "train.save_every", ">= 0"},
      {"optim: {lr: 0}", "optim.lr", "> 0"},
      {"optim: {lr: -1e-3}", "optim.lr", "> 0"},
      {"optim: {warmup: -1}", "optim.warmup", ">= 0"},
      {"optim: {beta2: 1.0}", "optim.beta2", "in [0, 1)"},
      {"optim: {min_lr_ratio: 1.5}", "optim.min_lr_ratio", "in [0, 1]"},
      {"optim: {eps: 0}", "optim.eps", "> 0"},
      {"optim: {clip: -1}", "optim.clip", ">= 0"},
      {"data: {val_fraction: 1}", "data.val_fraction", "in (0, 1)"},
      {"model: {d_model: 0}", "model.d_model", "in [1, 1048576]"},
      {"model: {norm_eps: 0}", "model.norm_eps", "> 0"},
      {"model: {mlp: {hidden: -5}}", "model.mlp.hidden", ">= 0"},
      {"model: {attention: {rope_theta: 0}}", "model.attention.rope_theta", "> 0"},
  };
  for (const auto& c : cases) expect_has(parse_error("\n" + c.yaml + "\n"), {"cfg.yaml:2:", "'" + c.key + "' must be " + c.want});
  expect_has(parse_error("model: {vocab_size: 300}\n"), {"cfg.yaml:1:", "model.vocab_size=300", "256", "vocab='bytes'"});
}

TEST(ConfigErrors, ShapeErrorFromOverrideNamesTheOverride) {
  std::string m = parse_error(kBase, {"model.d_model=90"});
  expect_has(m, {"command-line override 'model.d_model=90'", "model.attention.heads=4 does not divide model.d_model=90",
                 "model.attention.heads: " + loc(kBase, "heads: 4")});
  EXPECT_EQ(m.rfind("command-line override", 0), 0u) << "the override leads the message";
  expect_has(parse_error(kBase, {"model.moe.top_k=9"}), {"command-line override 'model.moe.top_k=9'", "top_k=9", "experts=4"});
  expect_has(parse_error(kBase, {"model.pattern=M*X"}), {"command-line override 'model.pattern=M*X'", "'X'"});
  expect_has(parse_error(kBase, {"model.mamba.version=3"}), {"command-line override 'model.mamba.version=3'", "1, 2"});
}

// --- overrides -----------------------------------------------------------------------------------

TEST(ConfigOverrides, SetAddForceDelete) {
  Config base = strata::parse_config(kBase, "cfg.yaml");
  // set: a key in the file, and one that is not (still a schema key)
  Config c = strata::parse_config(kBase, "cfg.yaml", {"model.d_model=128", "optim.beta1=0.8", "train.device=cuda"});
  EXPECT_EQ(c.model.d_model, 128);
  EXPECT_EQ(c.model.attention.head_dim, 32);  // re-derived after the override
  EXPECT_EQ(c.optim.beta1, 0.8f);
  EXPECT_EQ(c.train.device, "cuda");
  // +: adds a key the file does not set; refuses one it does (Hydra's rule)
  c = strata::parse_config(kBase, "cfg.yaml", {"+optim.warmup=7"});
  EXPECT_EQ(c.optim.warmup, 7);
  expect_has(parse_error(kBase, {"+model.d_model=64"}), {"command-line override '+model.d_model=64'", "'model.d_model' is already set",
                                                         loc(kBase, "d_model"),
                                                         "model.d_model=64", "++model.d_model=64"});
  expect_has(parse_error(kBase, {"+model.bogus=1"}), {"unknown key 'model.bogus'", "valid keys in 'model'"});
  // ++: set or add
  c = strata::parse_config(kBase, "cfg.yaml", {"++model.d_model=64", "++optim.warmup=3"});
  EXPECT_EQ(c.model.d_model, 64);
  EXPECT_EQ(c.optim.warmup, 3);
  // ~: back to the default; ~key=value only when it matches; ~section drops the whole section
  c = strata::parse_config(kBase, "cfg.yaml", {"~model.repeat", "~optim.schedule=constant", "~model.moe"});
  EXPECT_EQ(c.model.repeat, Config{}.model.repeat);
  EXPECT_EQ(c.optim.schedule, Config{}.optim.schedule);
  EXPECT_EQ(c.model.moe.experts, Config{}.model.moe.experts);
  EXPECT_EQ(c.model.moe.top_k, Config{}.model.moe.top_k);
  EXPECT_EQ(c.model.d_model, base.model.d_model);
  expect_has(parse_error(kBase, {"~optim.schedule=cosine"}), {"cannot delete 'optim.schedule'", "'constant'", "'cosine'",
                                                              loc(kBase, "schedule")});
  expect_has(parse_error(kBase, {"~optim.beta1"}), {"command-line override '~optim.beta1'", "cannot delete 'optim.beta1'", "default"});
  expect_has(parse_error("model: {d_model: 64}\n", {"~optim"}), {"cannot delete 'optim'"});
  // applied left to right: delete then add is fine
  c = strata::parse_config(kBase, "cfg.yaml", {"~model.d_model", "+model.d_model=64"});
  EXPECT_EQ(c.model.d_model, 64);
  expect_same(strata::parse_config(kBase, "cfg.yaml", {"model.d_model=64", "model.d_model=96"}), base);
}

TEST(ConfigOverrides, ValuesAreYamlScalars) {
  Config c = strata::parse_config(kBase, "cfg.yaml",
                                  {"data.path='my data.txt'", "model.pattern=*-", "train.run_dir=", "optim.lr=3e-4", "model.tie_embeddings=false",
                                   "train.seed=\"42\"", "data.val_fraction=0.25"});
  EXPECT_EQ(c.data.path, "my data.txt");
  EXPECT_EQ(c.model.pattern, "*-");
  EXPECT_EQ(c.train.run_dir, "");
  EXPECT_EQ(c.optim.lr, 3e-4f);
  EXPECT_FALSE(c.model.tie_embeddings);
  EXPECT_EQ(c.train.seed, 42u);
  EXPECT_EQ(c.data.val_fraction, 0.25f);
  EXPECT_EQ(strata::parse_config(kBase, "cfg.yaml", {"model.pattern=-"}).model.pattern, "-");
  EXPECT_EQ(strata::parse_config(kBase, "cfg.yaml", {"model.pattern='M*'"}).model.pattern, "M*");
  EXPECT_EQ(strata::parse_config(kBase, "cfg.yaml", {"data.path=a=b.txt"}).data.path, "a=b.txt");
  expect_has(parse_error(kBase, {"model.d_model=abc"}), {"command-line override 'model.d_model=abc'", "'model.d_model' must be an integer",
                                                         "got 'abc'"});
  expect_has(parse_error(kBase, {"model.d_model=[1, 2]"}), {"must be an integer", "a list"});
}

TEST(ConfigOverrides, UnknownKeysAndBadSyntax) {
  expect_has(parse_error(kBase, {"model.nope=1"}), {"command-line override 'model.nope=1'", "unknown key 'model.nope'", "valid keys in 'model'",
                                                    "d_model"});
  expect_has(parse_error(kBase, {"model.atention.heads=2"}), {"unknown key 'model.atention.heads'", "did you mean 'attention'"});
  expect_has(parse_error(kBase, {"modle.d_model=2"}), {"unknown key 'modle.d_model'", "valid top-level keys", "did you mean 'model'"});
  expect_has(parse_error(kBase, {"d_model=64"}), {"unknown key 'd_model'", "did you mean 'model.d_model'"});
  expect_has(parse_error(kBase, {"model.d_model.x=1"}), {"unknown key 'model.d_model.x'", "'model.d_model' holds an integer"});
  expect_has(parse_error(kBase, {"model.mamba=1"}), {"'model.mamba' is a section", "model.mamba.version="});
  for (std::string bad : {"", "model.d_model", "=5", "model..d_model=1", "model.d model=1", ".model=1", "~", "+~model.d_model",
                          "model.d_model@pkg=1"}) {
    expect_has(parse_error(kBase, {bad}), {"command-line override '" + bad + "'", "bad override syntax", "key=value", "+key=value", "~key"});
  }
}

// --- round trip and schema -----------------------------------------------------------------------

TEST(ConfigRoundTrip, ToYamlParsesBackExactly) {
  Config c = strata::parse_config(kBase, "cfg.yaml",
                                  {"data.path=we\"ird\\ pa:th #1 ü.txt", "train.run_dir=runs/x y", "train.seed=18446744073709551615",
                                   "train.steps=123456789012", "model.tie_embeddings=false", "optim.lr=0.00031415927", "model.norm_eps=1e-30"});
  std::string y = strata::to_yaml(c);
  std::printf("%s", y.c_str());
  Config back = strata::parse_config(y, "back.yaml");
  expect_same(back, c);
  EXPECT_EQ(back.data.path, "we\"ird\\ pa:th #1 ü.txt");
  EXPECT_EQ(back.train.seed, UINT64_MAX);
  EXPECT_EQ(strata::to_yaml(back), y);
  // Control characters survive too.
  c.data.path = std::string("tab\there\nnl\x01");
  EXPECT_EQ(strata::parse_config(strata::to_yaml(c), "b.yaml").data.path, c.data.path);
}

TEST(ConfigRoundTrip, FloatsAreBitExact) {
  std::mt19937_64 gen(1234);
  Config c = strata::parse_config(kBase, "cfg.yaml");
  int checked = 0;
  for (int i = 0; i < 3000; ++i) {
    uint32_t bits = uint32_t(gen()) & 0x7fffffffu;  // positive
    float x;
    std::memcpy(&x, &bits, 4);
    if (!std::isfinite(x) || x == 0.0f) continue;
    float frac = float(gen() >> 40) * 0x1p-24f;  // [0, 1), exactly representable
    c.optim.lr = x;
    c.optim.weight_decay = x;
    c.model.attention.rope_theta = x;
    c.optim.beta1 = frac;
    c.data.val_fraction = frac > 0 ? frac : 0.5f;
    Config back = strata::parse_config(strata::to_yaml(c), "f.yaml");
    ASSERT_EQ(std::memcmp(&back.optim.lr, &x, 4), 0) << "lr " << x << " came back as " << back.optim.lr;
    ASSERT_EQ(std::memcmp(&back.optim.beta1, &c.optim.beta1, 4), 0);
    ASSERT_TRUE(strata::config_diff(back, c).empty());
    ++checked;
  }
  std::printf("  %d random floats round-tripped bit-exactly\n", checked);
  EXPECT_GT(checked, 2500);
}

TEST(ConfigRoundTrip, DiffSeesEveryKey) {
  // Each schema key, overridden to a different valid value, shows up in config_diff.
  Config a = strata::parse_config(kBase, "cfg.yaml");
  std::vector<std::pair<std::string, std::string>> changes = {
      {"model.d_model", "192"}, {"model.pattern", "M*"}, {"optim.lr", "0.5"}, {"train.seed", "8"}, {"data.path", "other.txt"},
      {"model.moe.renorm", "false"}, {"model.mamba.bias", "true"}, {"train.steps", "51"},
  };
  for (auto& [k, v] : changes) {
    Config b = strata::parse_config(kBase, "cfg.yaml", {k + "=" + v});
    auto d = strata::config_diff(a, b);
    bool found = false;
    for (auto& s : d) found |= s.rfind(k + ":", 0) == 0;
    EXPECT_TRUE(found) << k;
  }
}

TEST(ConfigSchema, EveryKeyIsInYamlHelpAndOverridable) {
  const auto keys = strata::config_schema();
  // Independent walk of to_yaml's output with yaml-cpp: its leaves are exactly the schema keys.
  std::set<std::string> leaves;
  std::function<void(const YAML::Node&, const std::string&)> walk = [&](const YAML::Node& n, const std::string& p) {
    for (auto it = n.begin(); it != n.end(); ++it) {
      std::string k = (p.empty() ? "" : p + ".") + it->first.as<std::string>();
      if (it->second.IsMap()) walk(it->second, k);
      else leaves.insert(k);
    }
  };
  Config all;
  all.robot.planner.pattern = "M";  // a language config's dump leaves the robot section out
  // ... and the data section of the synthetic kinds that are not in use: one dump per kind.
  for (const char* kind : {"text", "mqar", "selective_copying", "induction_heads"}) {
    all.data.kind = kind;
    walk(YAML::Load(strata::to_yaml(all)), "");
  }
  std::set<std::string> schema_keys;
  for (auto& k : keys) schema_keys.insert(k.key);
  EXPECT_EQ(leaves, schema_keys);
  EXPECT_EQ(keys.size(), schema_keys.size()) << "duplicate keys in the schema";
  const std::string help = strata::config_help();
  for (const auto& k : keys) {
    SCOPED_TRACE(k.key);
    EXPECT_FALSE(k.help.empty());
    size_t p = help.find("  " + k.key + " ");
    ASSERT_NE(p, std::string::npos);
    std::string line = help.substr(p, help.find('\n', p) - p);
    EXPECT_NE(line.find(" " + k.default_value + " "), std::string::npos) << line;
    for (auto& a : k.allowed) EXPECT_NE(line.find(a), std::string::npos) << line;
    // Setting a key to its own default is always valid, and so is "+key" on an empty config.
    Config c = strata::parse_config("", "e.yaml", {"+" + k.key + "=" + k.default_value});
    expect_same(c, resolved_defaults());
  }
  // A few defaults written by hand from models/config.h.
  auto def = [&](const std::string& key) {
    for (auto& k : keys)
      if (k.key == key) return k.default_value;
    return std::string("?");
  };
  EXPECT_EQ(def("model.d_model"), "128");
  EXPECT_EQ(def("model.pattern"), "\"M*\"");
  EXPECT_EQ(def("optim.lr"), "0.001");
  EXPECT_EQ(def("train.device"), "\"cpu\"");
  EXPECT_EQ(def("model.mamba.version"), "2");
}

TEST(ConfigExperiments, EveryExperimentLoadsAndRoundTrips) {
  std::vector<fs::path> dirs;
  if (const char* s = std::getenv("STRATA_SOURCE_DIR")) dirs.push_back(fs::path(s) / "experiments");
  dirs.push_back(fs::path(__FILE__).parent_path().parent_path() / "experiments");
  dirs.push_back("experiments");
  fs::path dir;
  for (auto& d : dirs)
    if (fs::is_directory(d)) {
      dir = d;
      break;
    }
  if (dir.empty()) GTEST_SKIP() << "no experiments/ directory found";
  int n = 0;
  for (auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file() || (e.path().extension() != ".yaml" && e.path().extension() != ".yml")) continue;
    if (e.path().parent_path().filename() == "sweeps") continue;  // sweep files, not configs: tests/test_sweep.cpp
    SCOPED_TRACE(e.path().string());
    Config c;
    try {
      c = strata::load_config(e.path().string());
    } catch (const std::exception& ex) {
      ADD_FAILURE() << ex.what();
      continue;
    }
    expect_same(strata::parse_config(strata::to_yaml(c), "rt.yaml"), c);
    ++n;
  }
  std::printf("  %d experiment configs loaded from %s\n", n, dir.string().c_str());
}

// Sizes have upper bounds: a config whose model or batch could never fit is refused while the config
// is read, naming the key and the memory it would need, instead of hanging in the model build
// (model.repeat=100000000) or ending in std::bad_alloc (batch or seq near 2^31).
TEST(ConfigErrors, SizesThatCannotFitAreRefusedWithTheMemoryTheyNeed) {
  expect_has(parse_error("model: {repeat: 100000000}\n"), {"cfg.yaml:1:", "model.repeat=100000000", "bytes", "at most"});
  expect_has(parse_error("train: {batch: 2147483647}\n"), {"cfg.yaml:1:", "train.batch=2147483647", "bytes", "at most"});
  expect_has(parse_error("train: {seq: 2000000000}\n"), {"cfg.yaml:1:", "train.seq=2000000000", "bytes", "at most"});
  expect_has(parse_error("model: {d_model: 1048576, repeat: 64}\n"), {"model.d_model=1048576", "parameters", "bytes"});
  // The experiments and the defaults are far below the bound.
  EXPECT_NO_THROW(strata::parse_config("", "cfg.yaml"));
  EXPECT_NO_THROW(strata::parse_config("model: {repeat: 48, d_model: 4096}\ntrain: {batch: 8, seq: 4096}\n", "cfg.yaml"));
}

TEST(Config, MaxNonfiniteStepsKey) {
  EXPECT_EQ(strata::parse_config("", "cfg.yaml").train.max_nonfinite_steps, 10);
  EXPECT_EQ(strata::parse_config("train: {max_nonfinite_steps: 3}\n", "cfg.yaml").train.max_nonfinite_steps, 3);
  expect_has(parse_error("train: {max_nonfinite_steps: 0}\n"), {"train.max_nonfinite_steps", ">= 1"});
  EXPECT_NE(strata::config_help().find("train.max_nonfinite_steps"), std::string::npos);
}

// The baselines of issue 12: mamba.selective (Mamba-1 only, without inner norms) and attention.window (>= 0).
TEST(ConfigErrors, MixerBaselines) {
  Config c = strata::parse_config(
      "model: {pattern: 'M*', mamba: {version: 1, selective: false}, attention: {window: 64}}\n", "cfg.yaml");
  EXPECT_FALSE(c.model.mamba.selective);
  EXPECT_EQ(c.model.attention.window, 64);
  expect_has(parse_error("model: {pattern: M, mamba: {version: 2, selective: false}}\n"),
             {"model.mamba.selective=false", "Mamba-1 only", "model.mamba.version: 1"});
  expect_has(parse_error("model: {pattern: M, mamba: {version: 1, selective: false, inner_norms: true}}\n"),
             {"model.mamba.selective=false", "inner_norms"});
  expect_has(parse_error("model: {attention: {window: -1}}\n"), {"'model.attention.window' must be >= 0", "got -1"});
  // Without Mamba layers the setting changes nothing and is not checked against the version.
  EXPECT_NO_THROW(strata::parse_config("model: {pattern: '*', mamba: {selective: false}}\n", "cfg.yaml"));
}
