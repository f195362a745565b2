// The Python module (python/bindings, issue 10 item 5) against the C++ run-time path: a tiny robot
// policy trained on a generated episodes file, loaded through strata.Policy in the test venv,
// gives what RobotPlanner / RobotController give on the same observations with the training's
// time alignment (plan of tick t0(i) = max(0, floor((i - d) / ratio)) ratio, age i - t0(i)); the
// planner runs on exactly the calls i % ratio == 0; reset() starts the clock again.
// Skips with the reason when the module was not built (no pybind11) or no venv can be had (under
// CI=true a missing venv fails, as for the other oracle tests).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/rng.h"
#include "python_oracle.h"
#include "robot_testing.h"
#include "train/config_load.h"
#include "train/episodes.h"
#include "load/robot_runtime.h"
#include "train/robot_trainer.h"

namespace fs = std::filesystem;

namespace strata {
namespace {

// The built module's directory: <build>/python, next to the strata binary (STRATA_BIN).
std::string module_dir(std::string* why) {
  const char* bin = std::getenv("STRATA_BIN");
  if (!bin || !*bin) {
    *why = "STRATA_BIN is not set (run through ctest)";
    return "";
  }
  fs::path dir = fs::path(bin).parent_path() / "python";
  if (fs::exists(dir))
    for (auto& e : fs::directory_iterator(dir)) {
      std::string n = e.path().filename().string();
      if (n.rfind("strata", 0) == 0 && e.path().extension() == ".so") return dir.string();
    }
  *why = "the Python module was not built (no " + dir.string() +
         "/strata*.so: STRATA_PYTHON off or pybind11-dev missing; apt-get install pybind11-dev)";
  return "";
}

constexpr const char* kScript = R"PY(
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import strata
ckpt, obs_path, out_path, T = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
p = strata.Policy(ckpt)
obs = np.fromfile(obs_path, dtype=np.float32).reshape(T, p.obs_dim)
outs = []
for rep in range(2):  # the second pass after reset() must repeat the first
    p.reset()
    planned = []
    for i in range(T):
        a = p.act(obs[i])
        # its own buffer, contiguous (a zero stride once showed one value in every slot)
        assert a.dtype == np.float32 and a.shape == (p.action_dim,) and a.strides == (4,), (a.dtype, a.shape, a.strides)
        planned.append(int(p.last_planned))
        outs.append(a)
    print("planned", "".join(map(str, planned)))
    print("planner_calls", p.planner_calls, "tick", p.tick)
print("attrs", p.obs_dim, p.action_dim, p.planner_hz, p.control_hz, p.ratio, p.planner_delay_ticks)
lat = p.latency_us()
pc = p.latency_percentiles()
print("latency", len(lat), int(pc["n"]), int(all(x > 0 for x in lat)))
try:
    p.act(np.zeros(p.obs_dim + 1, dtype=np.float32))
    print("badobs accepted")
except ValueError as e:
    print("badobs refused")
np.stack(outs).astype(np.float32).tofile(out_path)
)PY";

TEST(PythonBinding, PolicyActEqualsRobotControllerAndPlansEveryRatioCalls) {
  std::string why;
  const std::string mod = module_dir(&why);
  if (mod.empty()) GTEST_SKIP() << why;
  const std::string python = testing::test_python(&why);
  if (python.empty()) GTEST_SKIP() << "no Python venv: " << why;

  fs::path dir = fs::temp_directory_path() / ("strata_pybind_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto at = [&](const std::string& n) { return (dir / n).string(); };
  testing::write_reach_episodes(at("eps.h5"), 6, 40, /*seed=*/7);
  Config cfg = parse_config(testing::robot_yaml(at("eps.h5"), at("run"), 5), "robot.yaml",
                            {"train.eval_batches=2", "optim.warmup=2"});
  TrainOptions o;
  o.quiet = true;
  TrainResult tr = train(cfg, to_yaml(cfg), o);
  ASSERT_FALSE(tr.last_checkpoint.empty());

  // The C++ path: RobotPlanner at ticks i % ratio == 0, RobotController every tick with the plan of
  // t0(i) and its age, as models/multirate.h aligns them in training.
  LoadedRobot robot = load_robot(tr.last_checkpoint);
  MultiRatePolicy& p = *robot.policy;
  const int64_t T = 37, O = p.obs_dim(), A = p.action_dim(), r = p.ratio(), d = cfg.robot.planner_delay_ticks;
  ASSERT_EQ(r, 4);
  std::vector<float> obs(size_t(T * O));
  Rng rng(11);
  for (float& x : obs) x = rng.normal();
  RobotPlanner planner(robot);
  RobotController controller(robot);
  const rt::PlanShape shape = plan_shape_of(p);
  std::vector<std::vector<float>> store;
  std::vector<rt::PlanRecord> plans;
  store.reserve(size_t(T / r + 1));
  std::vector<float> expected(size_t(T * A));
  std::string want_planned;
  for (int64_t i = 0; i < T; ++i) {
    rt::Observation ob{i, 0, {obs.data() + i * O, size_t(O)}};
    if (i % r == 0) {
      store.emplace_back(size_t(shape.floats()));
      rt::PlanRecord rec;
      rec.shape = shape, rec.latent = store.back().data(), rec.chunk = store.back().data() + shape.latent_dim;
      planner.plan(ob, rec);
      plans.push_back(rec);
    }
    want_planned += i % r == 0 ? '1' : '0';
    const int64_t t0 = std::max<int64_t>(0, (i - d) / r) * r;
    const int64_t j = i < d ? 0 : t0 / r;
    rt::PlanView view{&plans[size_t(j)], nullptr, false};
    controller.act(ob, view, i - j * r, {expected.data() + i * A, size_t(A)});
  }

  {
    std::ofstream f(at("obs.bin"), std::ios::binary);
    f.write(reinterpret_cast<const char*>(obs.data()), std::streamsize(obs.size() * sizeof(float)));
    std::ofstream s(at("check.py"));
    s << kScript;
  }
  std::string out;
  const std::string cmd = testing::shell_quote(python) + " " + testing::shell_quote(at("check.py")) + " " +
                          testing::shell_quote(mod) + " " + testing::shell_quote(tr.last_checkpoint) + " " +
                          testing::shell_quote(at("obs.bin")) + " " + testing::shell_quote(at("out.bin")) + " " +
                          std::to_string(T);
  const int rc = testing::run_command(cmd, &out, true);
  ASSERT_EQ(rc, 0) << out;
  std::printf("%s", out.c_str());

  const std::string planned_line = "planned " + want_planned + "\n";
  const std::string calls_line = fmt::format("planner_calls {} tick {}\n", (T + r - 1) / r, T);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n') >= 6, true);
  size_t first = out.find(planned_line);
  ASSERT_NE(first, std::string::npos) << "want " << planned_line << out;
  EXPECT_NE(out.find(planned_line, first + 1), std::string::npos) << "second pass after reset(): " << out;
  EXPECT_NE(out.find(calls_line), std::string::npos) << "want " << calls_line << out;
  EXPECT_NE(out.find(fmt::format("attrs {} {} 10 40 4 2\n", O, A)), std::string::npos) << out;
  EXPECT_NE(out.find(fmt::format("latency {} {} 1\n", 2 * T, 2 * T)), std::string::npos) << out;
  EXPECT_NE(out.find("badobs refused"), std::string::npos) << out;

  std::vector<float> got(size_t(2 * T * A));
  std::ifstream f(at("out.bin"), std::ios::binary);
  f.read(reinterpret_cast<char*>(got.data()), std::streamsize(got.size() * sizeof(float)));
  ASSERT_TRUE(f) << "out.bin holds fewer than " << got.size() << " floats";
  double max_diff = 0;
  for (int rep = 0; rep < 2; ++rep)
    for (size_t k = 0; k < expected.size(); ++k)
      max_diff = std::max(max_diff, double(std::fabs(got[size_t(rep) * expected.size() + k] - expected[k])));
  std::printf("  max |python - C++| over %lld calls x 2 passes: %.3g\n", (long long)T, max_diff);
  EXPECT_LE(max_diff, 1e-5);
  if (!std::getenv("KEEP")) fs::remove_all(dir);
}

}  // namespace
}  // namespace strata
