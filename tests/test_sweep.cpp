// Sweeps (issue 11 item 2): expansion of sweep files (grid, seeded random, listed points) and of
// train -m; bad keys and values refused with file, line and the valid keys before anything runs;
// the local executor end to end (manifest states, a failing point reported with its reason, the
// results table and CSV); the PNG writer checked byte by byte and decoded with zlib; the HParams
// summaries read back by TensorBoard itself.
#include <zlib.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "core/error.h"
#include "python_oracle.h"
#include "testing.h"
#include "train/plot.h"
#include "train/png.h"
#include "train/sweep_dir.h"
#include "train/sweep_results.h"
#include "train/sweep_spec.h"

namespace fs = std::filesystem;
using namespace strata;
namespace st = strata::testing;
using nlohmann::json;

namespace {

using strata::testing::read_bytes;

std::string values_of(const SweepPoint& p) {
  std::string s;
  for (auto& v : p.values) s += (s.empty() ? "" : " ") + v.key + "=" + v.value;
  return s;
}

// A scratch directory with data.txt and tiny.yaml (tests/cli.h's tiny hybrid model, 10 steps).
struct SweepScratch {
  std::string dir;
  explicit SweepScratch(const std::string& name) : dir(st::scratch_dir(name)) {
    st::write_text(dir + "/tiny.yaml", st::tiny_config("", 10));
  }
  ~SweepScratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string operator/(const std::string& f) const { return dir + "/" + f; }
};

// The message of the InputError that `f` throws ("" if none).
template <class F> std::string input_error(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// ---- expansion ----

TEST(SweepSpec, GridIsTheCartesianProductFirstKeySlowest) {
  SweepSpec s = parse_sweep("base: tiny.yaml\ngrid:\n  optim.lr: [1e-3, 3e-3]\n  model.pattern: [\"M*\", \"MM*\", \"*-\"]\n", "g.yaml", "");
  ASSERT_EQ(s.points.size(), 6u);
  EXPECT_EQ(s.keys, (std::vector<std::string>{"optim.lr", "model.pattern"}));
  std::vector<std::string> want = {"optim.lr=1e-3 model.pattern=M*", "optim.lr=1e-3 model.pattern=MM*", "optim.lr=1e-3 model.pattern=*-",
                                   "optim.lr=3e-3 model.pattern=M*", "optim.lr=3e-3 model.pattern=MM*", "optim.lr=3e-3 model.pattern=*-"};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(values_of(s.points[i]), want[i]);
  EXPECT_EQ(s.points[0].values[0].where, "g.yaml:3");  // each value knows the line of its key
  EXPECT_EQ(s.points[0].values[1].where, "g.yaml:4");
  EXPECT_EQ(s.name, "g");
  EXPECT_EQ(s.base, "tiny.yaml");
}

TEST(SweepSpec, RandomIsSeededAndStaysInItsRanges) {
  const std::string text =
      "base: b.yaml\n"
      "random:\n"
      "  samples: 200\n"
      "  seed: SEED\n"
      "  params:\n"
      "    optim.lr: {log_uniform: [1e-4, 1e-2]}\n"
      "    optim.weight_decay: {uniform: [0, 0.2]}\n"
      "    model.d_model: {int_uniform: [2, 5]}\n"
      "    model.pattern: {choice: [\"M*\", \"MM*\"]}\n";
  auto with_seed = [&](int seed) {
    std::string t = text;
    t.replace(t.find("SEED"), 4, std::to_string(seed));
    return parse_sweep(t, "r.yaml", "");
  };
  SweepSpec a = with_seed(3), b = with_seed(3), c = with_seed(4);
  ASSERT_EQ(a.points.size(), 200u);
  size_t differ = 0;
  std::set<std::string> patterns, dims;
  double lr_lo = 1, lr_hi = 0, below_1e3 = 0;
  for (size_t i = 0; i < a.points.size(); ++i) {
    EXPECT_EQ(values_of(a.points[i]), values_of(b.points[i]));  // the same seed, the same points
    differ += values_of(a.points[i]) != values_of(c.points[i]);
    const auto& v = a.points[i].values;
    ASSERT_EQ(v.size(), 4u);
    double lr = std::stod(v[0].value), wd = std::stod(v[1].value);
    EXPECT_TRUE(lr >= 1e-4 && lr <= 1e-2) << v[0].value;
    EXPECT_TRUE(wd >= 0 && wd <= 0.2) << v[1].value;
    lr_lo = std::min(lr_lo, lr), lr_hi = std::max(lr_hi, lr);
    below_1e3 += lr < 1e-3;
    dims.insert(v[2].value);
    patterns.insert(v[3].value);
    EXPECT_EQ(a.points[i].source, "random");
  }
  EXPECT_GT(differ, 190u);  // another seed, other points
  EXPECT_EQ(dims, (std::set<std::string>{"2", "3", "4", "5"}));
  EXPECT_EQ(patterns, (std::set<std::string>{"M*", "MM*"}));
  // Log-uniform: about half the draws below the geometric middle 1e-3 (200 draws: 100 +- 7 sd).
  EXPECT_NEAR(below_1e3, 100, 30);
  std::printf("  200 draws: lr in [%g, %g], %g below 1e-3; seeds 3 and 4 differ in %zu points\n", lr_lo, lr_hi, below_1e3, differ);
}

TEST(SweepSpec, ListedPointsFollowGridAndRandom) {
  SweepSpec s = parse_sweep(
      "base: b.yaml\n"
      "overrides: [train.steps=5]\n"
      "grid: {optim.lr: [1e-3, 2e-3]}\n"
      "random: {samples: 2, seed: 1, params: {optim.warmup: {int_uniform: [0, 10]}}}\n"
      "points:\n"
      "  - {model.pattern: \"M*\"}\n"
      "  - {optim.lr: 5e-3, model.pattern: \"MM*\"}\n",
      "p.yaml", "/some/dir");
  ASSERT_EQ(s.points.size(), 6u);
  EXPECT_EQ(s.base, "/some/dir/b.yaml");  // relative to the sweep file
  EXPECT_EQ(s.keys, (std::vector<std::string>{"optim.lr", "optim.warmup", "model.pattern"}));
  EXPECT_EQ(s.points[0].source, "grid");
  EXPECT_EQ(s.points[2].source, "random");
  EXPECT_EQ(values_of(s.points[4]), "model.pattern=M*");
  EXPECT_EQ(values_of(s.points[5]), "optim.lr=5e-3 model.pattern=MM*");
  EXPECT_EQ(point_overrides(s, 5), (std::vector<std::string>{"train.steps=5", "optim.lr=5e-3", "model.pattern=MM*"}));
}

TEST(SweepSpec, MultirunSweepsTheCommaLists) {
  SweepSpec s = multirun_sweep("cfg/q.yaml", {"train.steps=5", "optim.lr=1e-3,3e-3", "model.pattern=M*,MM*"});
  ASSERT_EQ(s.points.size(), 4u);
  EXPECT_EQ(s.name, "q");
  EXPECT_EQ(s.keys, (std::vector<std::string>{"optim.lr", "model.pattern"}));
  EXPECT_EQ(values_of(s.points[1]), "optim.lr=1e-3 model.pattern=MM*");
  EXPECT_EQ(point_overrides(s, 3), (std::vector<std::string>{"train.steps=5", "optim.lr=3e-3", "model.pattern=MM*"}));
  SweepSpec one = multirun_sweep("q.yaml", {"train.steps=5"});  // no comma list: one point, as in Hydra
  ASSERT_EQ(one.points.size(), 1u);
  EXPECT_TRUE(one.keys.empty());
  EXPECT_EQ(point_overrides(one, 0), (std::vector<std::string>{"train.steps=5"}));
  EXPECT_NE(input_error([] { multirun_sweep("q.yaml", {"optim.lr=1e-3,,2e-3"}); }).find("an empty value"), std::string::npos);
}

TEST(SweepSpec, MalformedSweepFilesNameFileAndLine) {
  struct Case {
    std::string yaml, want;
  };
  std::vector<Case> cases = {
      {"base: b.yaml\ngrid: {optim.lr: [1e-3]}\nexecuter: slurm\n", "s.yaml:3: unknown key 'executer'; valid top-level keys: base"},
      {"grid: {optim.lr: [1e-3]}\n", "no 'base'"},
      {"base: b.yaml\n", "no points"},
      {"base: b.yaml\nrandom: {samples: 2, params: {optim.lr: {gaussian: [0, 1]}}}\n", "unknown distribution 'gaussian'; valid: choice"},
      {"base: b.yaml\nrandom: {samples: 2, params: {optim.lr: {log_uniform: [0, 1]}}}\n", "s.yaml:2: 'optim.lr': log_uniform needs low > 0"},
      {"base: b.yaml\ngrid: {optim.lr: [1e-3]}\nslurm: {partition: x, cpus: 2}\n", "s.yaml:3: unknown key 'slurm.cpus'; valid keys in 'slurm'"},
      {"base: b.yaml\ngrid: {optim.lr: [1e-3]}\nexecutor: pbs\n", "s.yaml:3: executor 'pbs'; valid: local, slurm"},
      {"base: b.yaml\noverrides: [optim.lr=1]\ngrid: {optim.lr: [1e-3]}\n", "s.yaml:2: 'optim.lr' is both a fixed override and swept"},
  };
  for (auto& c : cases) {
    std::string msg = input_error([&] { parse_sweep(c.yaml, "s.yaml", ""); });
    EXPECT_NE(msg.find(c.want), std::string::npos) << "yaml:\n" << c.yaml << "message: " << msg;
  }
}

// The points go through train's own override parser before anything runs: a wrong key or value is
// refused naming the sweep file, the line, the key and the valid keys (or values).
TEST(SweepSpec, BadKeysAndValuesAreRefusedWithFileLineAndValidKeys) {
  SweepScratch d("sweep_badkeys");
  auto check = [&](const std::string& yaml) {
    st::write_text(d / "s.yaml", yaml);
    return input_error([&] { check_sweep(load_sweep(d / "s.yaml")); });
  };
  std::string m = check("base: tiny.yaml\ngrid:\n  optim.lr: [1e-3]\n  optim.lrr: [1, 2]\n");
  EXPECT_NE(m.find(d / "s.yaml:4: 'optim.lrr=1': unknown key 'optim.lrr'"), std::string::npos) << m;
  EXPECT_NE(m.find("valid keys in 'optim': beta1, beta2, clip, eps, lr,"), std::string::npos) << m;
  EXPECT_NE(m.find("did you mean 'lr'"), std::string::npos) << m;
  std::printf("  %s\n", m.c_str());

  m = check("base: tiny.yaml\nrandom:\n  samples: 3\n  params:\n    model.patern: {choice: [\"M*\"]}\n");
  EXPECT_NE(m.find(d / "s.yaml:5: 'model.patern=M*': unknown key 'model.patern'"), std::string::npos) << m;

  m = check("base: tiny.yaml\npoints:\n  - {optim.lr: 1e-3}\n  - {optim.lr: fast}\n");
  EXPECT_NE(m.find(d / "s.yaml:4: 'optim.lr=fast'"), std::string::npos) << m;
  EXPECT_NE(m.find("point 1 of 2"), std::string::npos) << m;

  m = check("base: tiny.yaml\noverrides:\n  - train.stepz=3\ngrid: {optim.lr: [1e-3]}\n");
  EXPECT_NE(m.find(d / "s.yaml:3: 'train.stepz=3': unknown key"), std::string::npos) << m;
  EXPECT_NE(m.find("valid keys in 'train':"), std::string::npos) << m;

  m = check("base: nothere.yaml\ngrid: {optim.lr: [1e-3]}\n");
  EXPECT_NE(m.find("base config"), std::string::npos) << m;
  EXPECT_NE(m.find("nothere.yaml' not found"), std::string::npos) << m;

  // The same through the CLI: exit 2, nothing created.
  st::write_text(d / "s.yaml", "base: tiny.yaml\ngrid:\n  optim.lrr: [1, 2]\n");
  auto r = st::run("sweep s.yaml", d.dir);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("s.yaml:3: 'optim.lrr=1': unknown key 'optim.lrr'"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(d / "runs")) << "a refused sweep must not create its directory";
  // And train -m.
  r = st::run("train tiny.yaml -m optim.lr=1e-3,3e-3 model.patern=M*,MM*", d.dir);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("unknown key 'model.patern'"), std::string::npos) << r.out;
}

// The example sweep files load, and every one of their points passes train's checks.
TEST(SweepSpec, TheExampleSweepsAreValid) {
  // experiments/sweeps: the examples; experiments/research/sweeps: the research experiments (issue 12).
  for (const char* sub : {"experiments/sweeps", "experiments/research/sweeps"}) {
    const fs::path dir = fs::path(st::source_dir()) / sub;
    if (!fs::is_directory(dir)) GTEST_SKIP() << "no " << dir;
    int n = 0;
    for (auto& e : fs::directory_iterator(dir)) {
      if (e.path().extension() != ".yaml") continue;
      SCOPED_TRACE(e.path().string());
      SweepSpec s = load_sweep(e.path().string());
      EXPECT_NO_THROW(check_sweep(s));
      EXPECT_GT(s.points.size(), 1u);
      ++n;
    }
    EXPECT_GE(n, 3) << sub;
  }
}

// ---- the local executor, end to end ----

TEST(SweepLocal, FourPointsFinishAndFailuresSayWhy) {
  SweepScratch d("sweep_local");
  st::write_text(d / "four.yaml",
                 "base: tiny.yaml\n"
                 "overrides: [train.steps=6, train.eval_every=3, train.log_every=3]\n"
                 "grid:\n"
                 "  optim.lr: [1e-3, 3e-3]\n"
                 "  model.pattern: [\"M*\", \"MM*\"]\n"
                 "parallel: 2\n");
  auto r = st::run("sweep four.yaml --dry-run", d.dir);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("2 at a time"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("strata train tiny.yaml train.steps=6 train.eval_every=3 train.log_every=3 optim.lr=1e-3 'model.pattern=M*'"),
            std::string::npos)
      << r.out;
  EXPECT_FALSE(fs::exists(d / "runs/sweeps/four/000/status.json")) << "--dry-run must not run anything";

  const auto t0 = std::chrono::steady_clock::now();
  r = st::run("sweep four.yaml --parallel 1", d.dir);
  const double sweep_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string dir = d / "runs/sweeps/four";
  json m = json::parse(read_bytes(dir + "/manifest.json"));
  ASSERT_EQ(m["points"].size(), 4u);
  double train_s = 0;
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(m["points"][i]["state"], "done") << i;
    PointStatus s = read_point_status(dir, i);
    EXPECT_EQ(s.state, "done");
    EXPECT_EQ(s.exit_code, 0);
    EXPECT_EQ(s.attempts, 1);
    train_s += s.train_s;
    EXPECT_TRUE(fs::exists(point_dir(dir, i) + "/ckpt-00000006.h5")) << i;
  }
  // Overhead: the sweep's wall time beyond its train processes' (spawning, manifest, status files).
  std::printf("  sweep overhead per run: %.3f s (4 points one at a time: %.2f s total, %.2f s in strata train)\n",
              (sweep_s - train_s) / 4, sweep_s, train_s);

  // A rerun skips what is done.
  r = st::run("sweep four.yaml", d.dir);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("4 points, 0 to run"), std::string::npos) << r.out;
  EXPECT_EQ(read_point_status(dir, 0).attempts, 1);

  r = st::run("sweep status runs/sweeps/four", d.dir);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("4 points in runs/sweeps/four: 4 done"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("003    done"), std::string::npos) << r.out;

  r = st::run("sweep results runs/sweeps/four", d.dir);
  ASSERT_EQ(r.code, 0) << r.out;
  std::printf("%s", r.out.c_str());
  EXPECT_NE(r.out.find("| point | optim.lr | model.pattern | state | steps | final val loss | best val loss"), std::string::npos);
  EXPECT_NE(r.out.find("| 001 | 1e-3 | MM\\* | done | 6 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("4 points: 4 done."), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("val acc"), std::string::npos) << "a text sweep has no accuracy columns";
  EXPECT_FALSE(fs::exists(dir + "/val_acc_curves.png"));
  // The CSV holds the same rows, and its numbers are the runs' own metrics.
  std::vector<std::string> lines;
  {
    std::istringstream in(read_bytes(dir + "/results.csv"));
    for (std::string l; std::getline(in, l);) lines.push_back(l);
  }
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0], "point,dir,state,optim.lr,model.pattern,steps,final_val_loss,best_val_loss,final_train_loss,tokens_per_s,wall_s");
  SweepResults res = collect_results(dir);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(lines[i + 1].rfind(fmt::format("{},{:03d},done,{},{},6,", i, i, i < 2 ? "1e-3" : "3e-3", i % 2 ? "MM*" : "M*"), 0), 0u)
        << lines[i + 1];
    // The last val_loss record of metrics.jsonl is the final val loss.
    std::istringstream in(read_bytes(point_dir(dir, i) + "/metrics.jsonl"));
    double last_val = NAN, best = INFINITY;
    for (std::string l; std::getline(in, l);) {
      json j = json::parse(l);
      if (j.contains("val_loss")) last_val = j["val_loss"], best = std::min(best, j["val_loss"].get<double>());
    }
    EXPECT_EQ(res.rows[i].final_val, last_val);
    EXPECT_EQ(res.rows[i].best_val, best);
    EXPECT_GT(res.rows[i].tokens_per_s, 0);
    EXPECT_GT(res.rows[i].wall_s, 0);
    EXPECT_EQ(res.rows[i].steps, 6);
  }
  for (const char* png : {"loss_curves.png", "val_loss_curves.png", "final_val_loss_vs_optim.lr.png", "final_val_loss_vs_model.pattern.png"})
    EXPECT_EQ(read_bytes(dir + "/" + png).substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << png;

  // A point that fails at run time (its data file is missing) is reported failed, with the exit
  // code and the end of its log; the other point finishes.
  st::write_text(d / "fail.yaml",
                 "base: tiny.yaml\n"
                 "overrides: [train.steps=3]\n"
                 "points:\n"
                 "  - {data.path: data.txt}\n"
                 "  - {data.path: missing.txt}\n");
  r = st::run("sweep fail.yaml", d.dir);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("point 001 (data.path=missing.txt): failed: exit code 2"), std::string::npos) << r.out;
  r = st::run("sweep status runs/sweeps/fail", d.dir);
  EXPECT_NE(r.out.find("1 done, 1 failed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("why: exit code 2 (bad input); last lines of"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("missing.txt"), std::string::npos) << r.out;
  std::printf("%s", r.out.c_str());
  json fm = json::parse(read_bytes(d / "runs/sweeps/fail/manifest.json"));
  EXPECT_EQ(fm["points"][0]["state"], "done");
  EXPECT_EQ(fm["points"][1]["state"], "failed");
  r = st::run("sweep results runs/sweeps/fail --no-plots", d.dir);
  EXPECT_NE(r.out.find("| 001 | missing.txt | failed | 0 |"), std::string::npos) << r.out;

  // A different sweep into a directory that holds one is refused.
  st::write_text(d / "other.yaml", "base: tiny.yaml\ndir: runs/sweeps/four\ngrid: {optim.lr: [5e-3]}\n");
  r = st::run("sweep other.yaml", d.dir);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("holds a different sweep"), std::string::npos) << r.out;
}

// An interrupted point (SIGTERM: what Slurm's pre-timeout signal becomes) saves a checkpoint and is
// "interrupted"; running it again resumes from that checkpoint and finishes.
// A synthetic task's sweep: the table, the CSV and the plots gain the accuracy (final, best, and at
// every data.eval_seqs length), taken from the runs' metrics.jsonl; a text sweep keeps its columns
// (SweepLocal.FourPointsFinishAndFailuresSayWhy checks the CSV header exactly).
TEST(SweepLocal, SyntheticRunsReportAccuracyAtEveryLength) {
  SweepScratch d("sweep_acc");
  st::write_text(d / "ih.yaml",
                 "model:\n"
                 "  d_model: 32\n"
                 "  pattern: \"*-\"\n"
                 "  attention: {heads: 2}\n"
                 "  mlp: {hidden: 48}\n"
                 "train: {steps: 4, batch: 4, seq: 16, seed: 1, eval_every: 2, eval_batches: 1, save_every: 0, log_every: 2}\n"
                 "optim: {lr: 3.0e-3, warmup: 1}\n"
                 "data:\n"
                 "  kind: induction_heads\n"
                 "  eval_seqs: \"32 64\"\n"
                 "  induction_heads: {vocab: 8}\n");
  st::write_text(d / "s.yaml",
                 "base: ih.yaml\n"
                 "points:\n"
                 "  - {optim.lr: 1e-3}\n"
                 "  - {optim.lr: 3e-3, data.eval_seqs: \"32\"}\n");
  auto r = st::run("sweep s.yaml", d.dir);
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string dir = d / "runs/sweeps/s";
  // Hand-made records replace point 000's metrics (a resumed step repeated, its last record wins),
  // so the cells are known exactly.
  st::write_text(point_dir(dir, 0) + "/metrics.jsonl",
                 "{\"step\": 2, \"loss\": 2.0, \"tokens_per_s\": 100}\n"
                 "{\"step\": 2, \"val_loss\": 1.5, \"val_acc\": 0.5, \"val_acc@32\": 0.25, \"val_acc@64\": 0.125}\n"
                 "{\"step\": 4, \"val_loss\": 1.0, \"val_acc\": 0.25, \"val_acc@32\": 0.0, \"val_acc@64\": 0.5}\n"
                 "{\"step\": 4, \"loss\": 1.25, \"tokens_per_s\": 100}\n"
                 "{\"step\": 4, \"val_loss\": 1.0, \"val_acc\": 0.375, \"val_acc@32\": 0.0625, \"val_acc@64\": 0.75}\n");
  r = st::run("sweep results runs/sweeps/s", d.dir);
  ASSERT_EQ(r.code, 0) << r.out;
  std::printf("%s", r.out.c_str());
  EXPECT_NE(r.out.find("| point | optim.lr | data.eval_seqs | state | steps | final val loss | best val loss | final val acc | best val acc | "
                       "val acc@32 | val acc@64 | final train loss |"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("| 000 | 1e-3 | 32 64 | done | 4 | 1.0000 | 1.0000 | 0.3750 | 0.5000 | 0.0625 | 0.7500 | 1.2500 |"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("Best val acc "), std::string::npos) << r.out;
  // Point 001 measured no val_acc@64: that cell is blank; its own numbers are its metrics'.
  SweepResults res = collect_results(dir);
  ASSERT_TRUE(res.has_acc);
  EXPECT_EQ(res.acc_lengths, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(res.rows[0].train_seq, 16);
  double last_acc = NAN, last32 = NAN;
  {
    std::istringstream in(read_bytes(point_dir(dir, 1) + "/metrics.jsonl"));
    for (std::string l; std::getline(in, l);) {
      json j = json::parse(l);
      EXPECT_FALSE(j.contains("val_acc@64"));
      if (j.contains("val_acc")) last_acc = j["val_acc"], last32 = j["val_acc@32"];
    }
  }
  ASSERT_TRUE(std::isfinite(last_acc));
  EXPECT_EQ(res.rows[1].final_acc, last_acc);
  EXPECT_EQ(res.rows[1].final_acc_at.at(32), last32);
  EXPECT_EQ(res.rows[1].final_acc_at.count(64), 0u);
  EXPECT_NE(r.out.find(fmt::format("| {:.4f} |  | ", last32)), std::string::npos) << r.out;
  std::vector<std::string> lines;
  {
    std::istringstream in(read_bytes(dir + "/results.csv"));
    for (std::string l; std::getline(in, l);) lines.push_back(l);
  }
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0],
            "point,dir,state,optim.lr,data.eval_seqs,steps,final_val_loss,best_val_loss,final_val_acc,best_val_acc,val_acc@32,val_acc@64,"
            "final_train_loss,tokens_per_s,wall_s");
  EXPECT_EQ(lines[1].rfind("0,000,done,1e-3,32 64,4,1,1,0.375,0.5,0.0625,0.75,1.25,100,", 0), 0u) << lines[1];
  for (const char* png : {"val_acc_curves.png", "final_val_acc_vs_optim.lr.png", "final_val_acc_vs_data.eval_seqs.png", "val_acc_vs_length.png",
                          "final_val_loss_vs_optim.lr.png"})
    EXPECT_EQ(read_bytes(dir + "/" + png).substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << png;
}

TEST(SweepLocal, AnInterruptedPointResumesItsRun) {
  SweepScratch d("sweep_resume");
  st::write_text(d / "one.yaml", "base: tiny.yaml\noverrides: [train.steps=100000, train.save_every=0]\ngrid: {optim.lr: [1e-3]}\n");
  auto r = st::run("sweep one.yaml --dry-run", d.dir);  // creates the directory and manifest only
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string dir = d / "runs/sweeps/one";
  // run-point in the background, then SIGTERM once training has logged a step.
  // (run_raw prefixes "cd DIR && ": the "true;" keeps the background job out of that list.)
  r = st::run_raw("true; '" + st::strata_bin() + "' sweep run-point runs/sweeps/one --index 0 & pid=$!; "
                  "for i in $(seq 1 300); do grep -q '\"step\"' runs/sweeps/one/000/metrics.jsonl 2>/dev/null && break; sleep 0.1; done; "
                  "kill -TERM $pid; wait $pid; echo rc=$?",
                  d.dir);
  EXPECT_NE(r.out.find("rc=0"), std::string::npos) << r.out;
  PointStatus s = read_point_status(dir, 0);
  EXPECT_EQ(s.state, "interrupted") << s.reason;
  EXPECT_FALSE(fs::is_empty(point_dir(dir, 0)));
  bool has_ckpt = false;
  for (auto& e : fs::directory_iterator(point_dir(dir, 0))) has_ckpt |= e.path().extension() == ".h5";
  EXPECT_TRUE(has_ckpt);
  // The second attempt resumes that checkpoint (then it is stopped the same way).
  // (run_raw prefixes "cd DIR && ": the "true;" keeps the background job out of that list.)
  r = st::run_raw("true; '" + st::strata_bin() + "' sweep run-point runs/sweeps/one --index 0 & pid=$!; "
                  "for i in $(seq 1 300); do grep -q 'resuming from' runs/sweeps/one/000/log.txt && break; sleep 0.1; done; "
                  "sleep 0.5; kill -TERM $pid; wait $pid; echo rc=$?",
                  d.dir);
  EXPECT_NE(r.out.find("rc=0"), std::string::npos) << r.out;
  const std::string log = read_bytes(point_dir(dir, 0) + "/log.txt");
  EXPECT_NE(log.find("=== attempt 2 on"), std::string::npos) << log;
  EXPECT_NE(log.find("(resuming)"), std::string::npos) << log;
  EXPECT_NE(log.find("resuming from"), std::string::npos) << log;
  s = read_point_status(dir, 0);
  EXPECT_EQ(s.attempts, 2);
  EXPECT_EQ(s.state, "interrupted") << s.reason;
}

// ---- PNG ----

namespace {

uint32_t be32(const std::string& s, size_t at) {
  return uint32_t(uint8_t(s[at])) << 24 | uint32_t(uint8_t(s[at + 1])) << 16 | uint32_t(uint8_t(s[at + 2])) << 8 | uint8_t(s[at + 3]);
}

// CRC-32 (ISO 3309, as PNG uses it), one bit at a time: independent of zlib's table code.
uint32_t crc32_bitwise(const std::string& s) {
  uint32_t c = ~0u;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
  }
  return ~c;
}

struct Chunk {
  std::string type, data;
};

// Splits a PNG into chunks, checking the signature and every CRC.
std::vector<Chunk> png_chunks(const std::string& png) {
  std::vector<Chunk> out;
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  for (size_t pos = 8; pos < png.size();) {
    if (pos + 12 > png.size()) {
      ADD_FAILURE() << "truncated chunk at " << pos;
      break;
    }
    const uint32_t len = be32(png, pos);
    Chunk c{png.substr(pos + 4, 4), png.substr(pos + 8, len)};
    EXPECT_EQ(be32(png, pos + 8 + len), crc32_bitwise(c.type + c.data)) << c.type << " CRC";
    out.push_back(std::move(c));
    pos += 12 + len;
  }
  return out;
}

// Decodes what encode_png writes (RGB8, filter 0 rows) back into pixels, through zlib's inflate.
std::vector<uint8_t> decode_rgb(const std::string& png, int* w, int* h) {
  auto chunks = png_chunks(png);
  EXPECT_GE(chunks.size(), 3u);
  if (chunks.size() < 3) return {};
  EXPECT_EQ(chunks.front().type, "IHDR");
  EXPECT_EQ(chunks.back().type, "IEND");
  EXPECT_EQ(chunks.back().data, "");
  const std::string& ihdr = chunks.front().data;
  EXPECT_EQ(ihdr.size(), 13u);
  *w = int(be32(ihdr, 0)), *h = int(be32(ihdr, 4));
  EXPECT_EQ(ihdr.substr(8), std::string("\x08\x02\x00\x00\x00", 5));  // 8-bit RGB, deflate, filter 0, no interlace
  std::string z;
  for (auto& c : chunks)
    if (c.type == "IDAT") z += c.data;
  std::vector<uint8_t> raw(size_t(*h) * (size_t(*w) * 3 + 1));
  uLongf n = uLongf(raw.size());
  EXPECT_EQ(uncompress(raw.data(), &n, reinterpret_cast<const Bytef*>(z.data()), uLong(z.size())), Z_OK);
  EXPECT_EQ(n, raw.size());
  std::vector<uint8_t> rgb;
  for (int y = 0; y < *h; ++y) {
    EXPECT_EQ(raw[size_t(y) * (size_t(*w) * 3 + 1)], 0) << "filter byte of row " << y;
    const uint8_t* row = &raw[size_t(y) * (size_t(*w) * 3 + 1) + 1];
    rgb.insert(rgb.end(), row, row + size_t(*w) * 3);
  }
  return rgb;
}

}  // namespace

TEST(Png, SignatureChunksCrcsAndPixelsDecode) {
  Image img(37, 11);  // odd sizes: no row padding assumptions
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) img.set(x, y, {uint8_t(x * 7), uint8_t(y * 23), uint8_t(x ^ y)});
  img.set(-1, 3, {1, 2, 3});  // outside: ignored
  img.set(37, 0, {1, 2, 3});
  const std::string png = encode_png(img);
  int w = 0, h = 0;
  std::vector<uint8_t> rgb = decode_rgb(png, &w, &h);
  EXPECT_EQ(w, 37);
  EXPECT_EQ(h, 11);
  EXPECT_EQ(rgb, img.rgb);
  // The reference CRC is right too: "IEND" with no data has the well-known CRC AE 42 60 82.
  EXPECT_EQ(crc32_bitwise("IEND"), 0xAE426082u);
  EXPECT_EQ(png.substr(png.size() - 12), std::string("\0\0\0\0IEND\xae\x42\x60\x82", 12));
}

TEST(Png, PlotsAreValidImagesWithTheirSeriesDrawn) {
  PlotSpec spec;
  spec.title = "loss";
  spec.x_label = "step";
  spec.y_label = "loss";
  std::vector<PlotSeries> series = {{"a", {0, 1, 2, 3}, {4, 3, 2.5, 2}}, {"b", {0, 1, 2, 3}, {4, 3.5, 3.2, 3.1}}};
  Image img = render_plot(spec, series);
  int w = 0, h = 0;
  std::vector<uint8_t> rgb = decode_rgb(encode_png(img), &w, &h);
  EXPECT_EQ(w, spec.width);
  EXPECT_EQ(h, spec.height);
  EXPECT_EQ(rgb, img.rgb);
  // Both series' colours are on the canvas (tab:blue and tab:orange), and so is black text.
  auto count = [&](Rgb c) {
    size_t n = 0;
    for (size_t i = 0; i < rgb.size(); i += 3) n += rgb[i] == c.r && rgb[i + 1] == c.g && rgb[i + 2] == c.b;
    return n;
  };
  EXPECT_GT(count({31, 119, 180}), 200u);
  EXPECT_GT(count({255, 127, 14}), 200u);
  EXPECT_GT(count({0, 0, 0}), 100u);
  // Log x and categorical x render too; empty series give an empty frame, not a crash.
  spec.log_x = true;
  EXPECT_NO_THROW(encode_png(render_plot(spec, {{"lr", {1e-4, 1e-3, 1e-2}, {3, 2, 2.5}}})));
  spec.log_x = false;
  spec.x_categories = {"M*", "MM*"};
  EXPECT_NO_THROW(encode_png(render_plot(spec, {{"p", {0, 1}, {3, 2}}})));
  EXPECT_NO_THROW(encode_png(render_plot(spec, {})));
  EXPECT_EQ(nice_ticks(0, 1, 5), (std::vector<double>{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1}));
}

// ---- TensorBoard HParams ----

// Every run of a sweep writes the HParams plugin's experiment, session start (the swept values) and
// session end; TensorBoard's own loader and the plugin's parsers read them back, and the plugin's
// backend (what the HPARAMS tab shows) finds the swept keys and the metrics.
TEST(SweepHParams, TensorBoardReadsTheSweepsHParams) {
  std::string why;
  std::string py = st::test_python(&why);
  if (py.empty()) GTEST_SKIP() << "no Python test venv: " << why;
  SweepScratch d("sweep_hparams");
  auto r = st::run("train tiny.yaml -m train.steps=4 train.eval_every=2 optim.lr=1e-3,3e-3 model.pattern=M*,MM* --parallel 2", d.dir);
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string dir = d / "runs/multirun/tiny";
  std::string out;
  int rc = st::run_command(st::shell_quote(py) + " " + st::shell_quote(st::source_dir() + "/tests/tensorboard_hparams_read.py") + " " +
                               st::shell_quote(dir) + " 2>/dev/null",
                           &out);
  ASSERT_EQ(rc, 0) << out;
  json j = json::parse(out);
  ASSERT_EQ(j["runs"].size(), 4u) << j.dump(1);
  json m = json::parse(read_bytes(dir + "/manifest.json"));
  for (size_t i = 0; i < 4; ++i) {
    const json& run = j["runs"][fmt::format("{:03d}", i)];
    EXPECT_EQ(run["experiment"]["hparams"], json::parse(R"([["optim.lr","DATA_TYPE_FLOAT64"],["model.pattern","DATA_TYPE_STRING"]])"));
    EXPECT_EQ(run["experiment"]["metrics"], json::parse(R"(["train/loss","val/loss"])"));
    const json& values = m["points"][i]["values"];
    EXPECT_EQ(run["start"]["hparams"]["optim.lr"].get<double>(), std::stod(values["optim.lr"].get<std::string>()));
    EXPECT_EQ(run["start"]["hparams"]["model.pattern"], values["model.pattern"]);
    EXPECT_EQ(run["start"]["group"], "tiny");
    EXPECT_EQ(run["end"]["status"], "STATUS_SUCCESS");
    EXPECT_GE(run["end"]["end_time"].get<double>(), run["start"]["start_time"].get<double>());
  }
  EXPECT_EQ(j["backend"], json::parse(R"({"hparams":["model.pattern","optim.lr"],"metrics":["train/loss","val/loss"]})")) << j["backend"].dump();
  std::printf("  TensorBoard read the hparams of 4 runs; HPARAMS backend: %s\n", j["backend"].dump().c_str());

  // A plain train run reports the default keys.
  r = st::run("train tiny.yaml train.steps=2 train.run_dir=plain", d.dir);
  ASSERT_EQ(r.code, 0) << r.out;
  rc = st::run_command(st::shell_quote(py) + " " + st::shell_quote(st::source_dir() + "/tests/tensorboard_hparams_read.py") + " " +
                           st::shell_quote(d / "plain") + " 2>/dev/null",
                       &out);
  ASSERT_EQ(rc, 0) << out;
  j = json::parse(out);
  ASSERT_EQ(j["runs"].size(), 1u) << out;
  const json& run = j["runs"].begin().value();
  EXPECT_EQ(run["start"]["hparams"]["train.steps"], 2.0);
  EXPECT_EQ(run["start"]["hparams"]["model.pattern"], "M*E-");
  EXPECT_EQ(run["end"]["status"], "STATUS_SUCCESS");
  // --hparams refuses a key that is not in the schema, before training.
  r = st::run("train tiny.yaml train.steps=2 train.run_dir=bad --hparams optim.lrr", d.dir);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("'optim.lrr' is not a config key"), std::string::npos) << r.out;
}
