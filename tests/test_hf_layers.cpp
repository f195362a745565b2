// Layer-level parity with transformers 5.24.0: each strata block against the transformers module it
// stands for, in fp32 (max abs diff <= 1e-4). tests/hf_layers.py builds the modules with tiny configs,
// sets every parameter random (A_log, D, dt biases and norm weights included) and writes parameters
// (under strata's names), a random input and the module's output. Each case's strata config comes
// from the script as a `model:` section and goes through parse_config, so the config keys the mapping
// needs are exercised too. Every block runs forward, and token-by-token decode from an empty cache
// (for MLP/MoE, step is the per-token forward), against the module's output; RoPE cases also compare
// strata's inverse-frequency table with the rotary embedding's inv_freq.
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/error.h"
#include "layers/block.h"
#include "layers/rope_freq.h"
#include "python_oracle.h"
#include "testing.h"
#include "train/config_load.h"

using namespace strata;
namespace st = strata::testing;
namespace fs = std::filesystem;
using st::expect_close;

namespace {

// The oracle's output, produced once per test binary.
struct Oracle {
  std::string skip;  // why there is none ("" when there is)
  fs::path dir;
  nlohmann::json cases;
};

const Oracle& oracle() {
  static Oracle o = [] {
    Oracle r;
    std::string why;
    const std::string py = st::test_python(&why);
    if (py.empty()) {
      r.skip = "no Python test venv: " + why;
      return r;
    }
    r.dir = fs::temp_directory_path() / ("strata_hf_layers_" + std::to_string(getpid()));
    fs::remove_all(r.dir);
    static fs::path to_remove = r.dir;
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(to_remove, ec);
    });
    std::string log;
    const int rc = st::run_command(st::shell_quote(py) + " " + st::shell_quote(st::source_dir() + "/tests/hf_layers.py") +
                                       " " + st::shell_quote(r.dir.string()),
                                   &log, true);
    // A failing oracle is a test failure, not a skip: the venv is there, the script is broken.
    if (rc != 0) throw Error("tests/hf_layers.py failed (rc " + std::to_string(rc) + "):\n" + log);
    std::ifstream f(r.dir / "cases.json");
    r.cases = nlohmann::json::parse(f);
    return r;
  }();
  return o;
}

std::vector<float> read_bin(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  EXPECT_TRUE(f.good()) << "missing " << p;
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])));
  return m;
}

const std::map<char, std::string> kSub = {{'*', "self_attn"}, {'M', "mixer"}, {'-', "mlp"}, {'E', "moe"}};

// Runs every case of `module`: loads its parameters into the strata block by name, then forward and
// decode against transformers' output. Returns the number of cases run.
int run_module(const std::string& module) {
  const Oracle& o = oracle();
  int n = 0;
  for (const auto& meta : o.cases) {
    if (meta["module"] != module) continue;
    ++n;
    const std::string name = meta["name"];
    const fs::path dir = o.dir / name;
    SCOPED_TRACE(name);
    const std::string yaml = "model: " + meta["strata"].dump() + "\n";
    std::printf("%s (%s)\n  strata %s", name.c_str(), module.c_str(), yaml.c_str());
    ModelConfig cfg = parse_config(yaml, name + ".yaml").model;
    const char kind = meta["kind"].get<std::string>()[0];
    ParamStore store;
    auto blk = make_block(kind, cfg, store, "layers.0");
    store.allocate(1);
    const std::string prefix = "layers.0." + kSub.at(kind) + ".";
    for (const auto& [pname, shape] : meta["params"].items()) {
      const int i = store.find(prefix + pname);
      EXPECT_GE(i, 0) << "transformers has " << pname << ", strata does not";
      if (i < 0) continue;
      EXPECT_EQ(store.infos()[size_t(i)].shape, shape.get<Shape>()) << pname;
      const auto v = read_bin(dir / (pname + ".bin"));
      if (int64_t(v.size()) != store.infos()[size_t(i)].numel) {
        ADD_FAILURE() << pname << ": " << v.size() << " values for " << store.infos()[size_t(i)].numel;
        continue;
      }
      std::memcpy(store.data(ParamRef{i}), v.data(), sizeof(float) * v.size());
    }
    EXPECT_EQ(store.infos().size(), meta["params"].size()) << "strata has parameters transformers does not";

    if (meta.contains("inv_freq")) {
      const auto table = rope_inv_freq(cfg.attention, meta["rope_dims"].get<int64_t>());
      expect_close(table, meta["inv_freq"].get<std::vector<double>>(), 0, 1e-6, "inv_freq vs transformers");
    }

    const int64_t B = meta["B"], T = meta["T"], D = cfg.d_model;
    const auto x = read_bin(dir / "x.bin"), want = read_bin(dir / "y.bin");
    if (int64_t(x.size()) != B * T * D || want.size() != x.size()) {
      ADD_FAILURE() << "x.bin / y.bin hold " << x.size() << " / " << want.size() << " values, not B*T*D = " << B * T * D;
      continue;
    }
    Arena arena;
    Ctx ctx;
    ctx.arena = &arena;
    std::vector<float> y(x.size(), 1e30f);
    blk->forward(ctx, y.data(), x.data(), B, T, nullptr);
    std::printf("  |y| max %.3f; forward vs transformers: max abs diff %.3e\n", meta["y_absmax"].get<double>(),
                max_abs_diff(y, want));
    expect_close(y, want, 1e-4, 0, "forward vs transformers");

    auto cache = blk->allocate_cache(B, T);
    std::vector<float> ys(x.size(), 1e30f), xt(size_t(B * D)), yt(size_t(B * D));
    for (int64_t t = 0; t < T; ++t) {
      arena.reset();
      for (int64_t b = 0; b < B; ++b) std::memcpy(&xt[b * D], &x[(b * T + t) * D], sizeof(float) * D);
      blk->step(ctx, yt.data(), xt.data(), B, cache.get());
      for (int64_t b = 0; b < B; ++b) std::memcpy(&ys[(b * T + t) * D], &yt[b * D], sizeof(float) * D);
    }
    std::printf("  decode (%ld steps) vs transformers: max abs diff %.3e\n", long(T), max_abs_diff(ys, want));
    expect_close(ys, want, 1e-4, 0, "decode vs transformers");
  }
  return n;
}

}  // namespace

// One TEST per transformers module; `cases` is how many cases of it tests/hf_layers.py writes.
#define HF_PARITY(test, module, cases)                                                   \
  TEST(HfLayers, test) {                                                                 \
    if (!oracle().skip.empty()) GTEST_SKIP() << oracle().skip;                           \
    EXPECT_EQ(run_module(module), cases) << "cases of " module " in tests/hf_layers.py"; \
  }

// RoPE default, linear and llama3 (all three llama3 regimes: kept, blended, divided frequencies).
HF_PARITY(LlamaAttention, "LlamaAttention", 3)
// Partial rotary: RoPE on half of each head (attention.rope_dims).
HF_PARITY(StableLmAttentionPartialRotary, "StableLmAttention", 1)
// No positional encoding (attention.rope = false).
HF_PARITY(JambaAttention, "JambaAttention", 1)
HF_PARITY(LlamaMLP, "LlamaMLP", 1)
// Softmax router, top-2 of 6, renormalised gates (moe.renorm = true).
HF_PARITY(MixtralSparseMoeBlock, "MixtralSparseMoeBlock", 1)
// Top-2 of 5 without renormalisation (moe.renorm = false).
HF_PARITY(JambaSparseMoeBlock, "JambaSparseMoeBlock", 1)
// Mamba-1 slow path, with and without projection / conv biases.
HF_PARITY(MambaMixer, "MambaMixer", 2)
// Mamba-2 chunked torch path: 2 and 4 groups (gated norm per group of d_inner / n_groups), T not a
// multiple of the chunk.
HF_PARITY(Mamba2Mixer, "Mamba2Mixer", 2)
// Mamba-1 with RMSNorms on dt, B, C (mamba.inner_norms).
HF_PARITY(JambaMambaMixer, "JambaMambaMixer", 1)
