// Sweeps on a real Slurm (issue 11 item 3): scripts/slurm_local.sh starts a one-node cluster (munge,
// slurmctld, slurmd) in a scratch directory; a 4-point sweep is submitted as an array and waited
// for, and `sweep results` lists 4 done runs. Then Slurm's pre-timeout signal (USR1 to the batch
// shell, as --signal=B:USR1@90 sends it) makes a point checkpoint and requeue, and the requeued task
// resumes its run. Skipped, with the reason, only where Slurm cannot be started (exit 3 of the script).
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "local_slurm.h"
#include "testing.h"
#include "train/sweep_dir.h"

namespace fs = std::filesystem;
using namespace strata;
namespace st = strata::testing;
using nlohmann::json;

using strata::testing::LocalSlurm;
using strata::testing::read_bytes;
using strata::testing::wait_for;

TEST(SweepSlurm, FourPointArrayFinishesAndARequeuedPointResumes) {
  LocalSlurm slurm(16837);
  if (slurm.up_code == 3) GTEST_SKIP() << "Slurm cannot be started here: " << slurm.up_out;
  ASSERT_EQ(slurm.up_code, 0) << slurm.up_out;
  std::printf("  %s", slurm.up_out.c_str());
  const std::string d = st::scratch_dir("sweep_slurm");
  st::write_text(d + "/tiny.yaml", st::tiny_config("", 10));
  st::write_text(d + "/four.yaml",
                 "base: tiny.yaml\n"
                 "overrides: [train.steps=6, train.eval_every=3, train.log_every=3]\n"
                 "grid:\n"
                 "  optim.lr: [1e-3, 3e-3]\n"
                 "  model.pattern: [\"M*\", \"MM*\"]\n"
                 "executor: slurm\n"
                 "parallel: 2\n"
                 "slurm: {time: \"00:10:00\", cpus_per_task: 1, mem: 1G}\n");
  auto r = slurm.strata("sweep four.yaml --wait", d);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("as Slurm job"), std::string::npos) << r.out;
  const std::string script = read_bytes(d + "/runs/sweeps/four/sweep.sbatch");
  EXPECT_NE(script.find("#SBATCH --array=0-3%2\n"), std::string::npos) << script;
  EXPECT_NE(script.find("#SBATCH --signal=B:USR1@90\n#SBATCH --requeue\n"), std::string::npos) << script;
  r = slurm.strata("sweep results runs/sweeps/four", d);
  ASSERT_EQ(r.code, 0) << r.out;
  std::printf("%s", r.out.c_str());
  EXPECT_NE(r.out.find("4 points: 4 done."), std::string::npos) << r.out;
  for (int i = 0; i < 4; ++i) EXPECT_NE(r.out.find(fmt::format("| {:03d} |", i)), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(d + "/runs/sweeps/four/loss_curves.png"));
  json m = json::parse(read_bytes(d + "/runs/sweeps/four/manifest.json"));
  ASSERT_EQ(m["slurm_jobs"].size(), 1u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(m["points"][i]["state"], "done");
    EXPECT_EQ(read_point_status(d + "/runs/sweeps/four", size_t(i)).attempts, 1);
  }

  // Requeue: a long point gets the pre-timeout signal, checkpoints, and its task is requeued; the
  // requeued task (started at once here instead of after Slurm's requeue delay) resumes the run.
  st::write_text(d + "/long.yaml",
                 "base: tiny.yaml\n"
                 "overrides: [train.steps=1000000, train.save_every=0, train.log_every=5]\n"
                 "grid: {optim.lr: [1e-3]}\n"
                 "executor: slurm\n"
                 "slurm: {time: \"00:10:00\", cpus_per_task: 1}\n");
  r = slurm.strata("sweep long.yaml", d);
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string dir = d + "/runs/sweeps/long";
  const std::string job = json::parse(read_bytes(dir + "/manifest.json"))["slurm_jobs"].back().get<std::string>();
  const std::string task = job + "_0";
  ASSERT_TRUE(wait_for([&] { return read_bytes(dir + "/000/metrics.jsonl").find("\"step\"") != std::string::npos; }, 120))
      << read_bytes(dir + "/000/log.txt");
  r = slurm.shell("scancel --batch --signal=USR1 " + task, d);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(wait_for([&] { return read_point_status(dir, 0).state == "interrupted"; }, 60)) << read_bytes(dir + "/000/log.txt");
  // Requeued: pending with a begin time; make it eligible now.
  EXPECT_TRUE(wait_for([&] { return slurm.shell("squeue -h -j " + job + " -o %T", d).out.find("PENDING") != std::string::npos; }, 30));
  slurm.shell("scontrol update JobId=" + task + " StartTime=now", d);
  EXPECT_TRUE(wait_for([&] { return read_bytes(dir + "/000/log.txt").find("resuming from") != std::string::npos; }, 120))
      << read_bytes(dir + "/000/log.txt");
  slurm.shell("scancel " + job, d);
  wait_for([&] { return read_point_status(dir, 0).state != "running"; }, 60);
  const std::string log = read_bytes(dir + "/000/log.txt");
  EXPECT_NE(log.find("=== attempt 2 on"), std::string::npos) << log;
  EXPECT_NE(log.find("(resuming)"), std::string::npos) << log;
  EXPECT_EQ(read_point_status(dir, 0).attempts, 2);
  std::printf("  requeue: %s\n", log.substr(log.find("resuming from"), log.find('\n', log.find("resuming from")) - log.find("resuming from")).c_str());
  std::error_code ec;
  fs::remove_all(d, ec);
}
