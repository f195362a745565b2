// Data-parallel training launched by Slurm (issue 11 item 3) on the one-node cluster of
// scripts/slurm_local.sh: `srun --mpi=pmix -n 2 strata train` (Open MPI's direct launch through
// Slurm's PMIx, no mpirun) ends where one process ends on the same global batch, and bitwise where
// `mpirun -np 2` ends; the sbatch script of the docs (experiments/slurm/train_dp.sbatch: 2 tasks,
// srun inside, the pre-timeout USR1) checkpoints on the signal, requeues itself, resumes and
// finishes. Skipped, with the reason, only where Slurm cannot be started (exit 3 of the script) or
// this build has no MPI.
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "cli.h"
#include "data_parallel_testing.h"
#include "local_slurm.h"
#include "testing.h"
#include "train/checkpoint.h"
#include "train/distributed.h"

namespace fs = std::filesystem;
using namespace strata;
namespace st = strata::testing;

namespace {

Checkpoint newest(const std::string& run_dir) {
  auto c = newest_good_checkpoint(run_dir, nullptr);
  EXPECT_TRUE(c.has_value()) << "no checkpoint in " << run_dir;
  return c ? load_checkpoint(*c) : Checkpoint{};
}

#define SKIP_WITHOUT_MPI_OR_SLURM(slurm)                                                                            \
  do {                                                                                                              \
    if (!mpi_built()) GTEST_SKIP() << "this build has no MPI (install openmpi-bin libopenmpi-dev, scripts/deps.sh)"; \
    if ((slurm).up_code == 3) GTEST_SKIP() << "Slurm cannot be started here: " << (slurm).up_out;                  \
    ASSERT_EQ((slurm).up_code, 0) << (slurm).up_out;                                                               \
  } while (0)

}  // namespace

TEST(SrunSlurm, TwoTasksMatchOneProcessOnTheSameGlobalBatch) {
  st::LocalSlurm slurm(16847);
  SKIP_WITHOUT_MPI_OR_SLURM(slurm);
  const std::string d = st::scratch_dir("srun_equal");
  st::write_text(d + "/a.yaml", st::dp_config(20));
  auto one = st::run_raw("OMP_NUM_THREADS=1 '" + st::strata_bin() + "' train a.yaml train.run_dir=one --quiet", d);
  ASSERT_EQ(one.code, 0) << one.out;
  // As root, and with no OMPI_MCA_* settings: a direct launch needs neither mpirun's
  // --allow-run-as-root nor anything else.
  auto two = slurm.shell("OMP_NUM_THREADS=1 srun --mpi=pmix -n 2 '" + st::strata_bin() + "' train a.yaml train.run_dir=two --quiet", d);
  ASSERT_EQ(two.code, 0) << two.out;
  EXPECT_EQ(two.out.find("done at step 20"), two.out.rfind("done at step 20")) << two.out;  // rank 0 only
  Checkpoint a = newest(d + "/one"), b = newest(d + "/two");
  EXPECT_EQ(a.state, b.state);
  // Not bitwise: one process sums the batch's rows inside each GEMM, two ranks sum halves and then add them.
  EXPECT_LE(st::max_abs_diff(a.params, b.params, "params after 20 steps, 1 process vs srun -n 2"), 1e-6);
  EXPECT_LE(st::max_abs_diff(a.adam_m, b.adam_m, "AdamW m"), 1e-6);
  EXPECT_NE(st::read_bytes(d + "/two/metrics.jsonl").find("\"dist_ranks\":2"), std::string::npos);
  // Plain srun: the local cluster's MpiDefault=pmix; the same two ranks give the same bits.
  auto plain = slurm.shell("OMP_NUM_THREADS=1 srun -n 2 '" + st::strata_bin() + "' train a.yaml train.run_dir=plain --quiet", d);
  ASSERT_EQ(plain.code, 0) << plain.out;
  EXPECT_EQ(st::max_abs_diff(b.params, newest(d + "/plain").params, "srun --mpi=pmix vs srun (MpiDefault=pmix)"), 0.0);
  // And mpirun's two ranks: the same reduction order, the same bits.
  if (std::system("command -v mpirun >/dev/null 2>&1") == 0) {
    auto mpi = st::run_raw("mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1 -np 2 '" + st::strata_bin() +
                           "' train a.yaml train.run_dir=mpirun --quiet", d);
    ASSERT_EQ(mpi.code, 0) << mpi.out;
    EXPECT_EQ(st::max_abs_diff(b.params, newest(d + "/mpirun").params, "srun -n 2 vs mpirun -np 2"), 0.0);
  }
  std::error_code ec;
  fs::remove_all(d, ec);
}

TEST(SrunSlurm, SbatchScriptCheckpointsOnTheTimeLimitSignalRequeuesAndFinishes) {
  st::LocalSlurm slurm(16851);
  SKIP_WITHOUT_MPI_OR_SLURM(slurm);
  const std::string d = st::scratch_dir("srun_sbatch");
  st::write_text(d + "/a.yaml", st::dp_config(1000000));  // runs until the signal
  const std::string script = st::source_dir() + "/experiments/slurm/train_dp.sbatch";
  auto r = slurm.shell(fmt::format("STRATA='{}' RUN_DIR=run sbatch --parsable --time=00:10:00 '{}' a.yaml train.save_every=0",
                                   st::strata_bin(), script), d);
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string job = r.out.substr(0, r.out.find_first_not_of("0123456789"));
  ASSERT_FALSE(job.empty()) << r.out;
  const std::string out_file = d + "/slurm-strata-dp-" + job + ".out";
  auto job_state = [&] {
    std::string s = slurm.shell("scontrol show job " + job, d).out;
    size_t p = s.find("JobState=");
    return p == std::string::npos ? std::string() : s.substr(p + 9, s.find_first_of(" \n", p) - p - 9);
  };
  ASSERT_TRUE(st::wait_for([&] { return st::read_bytes(d + "/run/metrics.jsonl").find("\"step\"") != std::string::npos; }, 120))
      << st::read_bytes(out_file);

  // What Slurm does 90 s before the time limit (--signal=B:USR1@90): USR1 to the batch shell.
  r = slurm.shell("scancel --batch --signal=USR1 " + job, d);
  ASSERT_EQ(r.code, 0) << r.out;
  ASSERT_TRUE(st::wait_for([&] { return job_state() == "PENDING"; }, 120)) << job_state() << "\n" << st::read_bytes(out_file);
  std::string out = st::read_bytes(out_file);
  EXPECT_NE(out.find("interrupted at step"), std::string::npos) << out;
  EXPECT_NE(out.find("requeueing job " + job), std::string::npos) << out;
  const int64_t stopped = newest(d + "/run").state.step;
  ASSERT_GT(stopped, 0);

  // The requeued job (started now instead of after Slurm's requeue delay) resumes the run; ten more
  // steps in the config let it finish.
  st::write_text(d + "/a.yaml", st::dp_config(int(stopped) + 10));
  slurm.shell("scontrol update JobId=" + job + " StartTime=now", d);
  ASSERT_TRUE(st::wait_for([&] { return job_state() == "COMPLETED"; }, 180)) << job_state() << "\n" << st::read_bytes(out_file);
  out = st::read_bytes(out_file);
  std::printf("%s", out.c_str());
  EXPECT_NE(out.find("(restart 1): 2 tasks, run --resume"), std::string::npos) << out;
  EXPECT_NE(out.find("resuming from run/" + checkpoint_filename(stopped)), std::string::npos) << out;
  EXPECT_NE(out.find(fmt::format("done at step {}", stopped + 10)), std::string::npos) << out;
  EXPECT_EQ(newest(d + "/run").state.step, stopped + 10);
  std::error_code ec;
  fs::remove_all(d, ec);
}
