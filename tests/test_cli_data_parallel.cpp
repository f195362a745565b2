// Data-parallel training through the CLI under a real `mpirun` (Open MPI, CPU): two ranks on the same
// global batch end where one process ends, a 2-rank run resumes in one process, SIGTERM to one rank
// stops every rank with one checkpoint, a killed rank ends the job instead of hanging it, and ZeRO-1
// (train.dist_zero1) changes no bit of the result. They
// skip, saying why, where this binary was built without MPI or mpirun is missing.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "cli.h"
#include "data_parallel_testing.h"
#include "train/checkpoint.h"
#include "train/distributed.h"

namespace fs = std::filesystem;
using namespace strata;
using namespace strata::testing;

namespace {

// mpirun as root (containers, CI) needs --allow-run-as-root; --oversubscribe lets 2 ranks start
// on a machine with fewer free slots. One thread per rank keeps the two ranks off each other's core.
const char* kMpirun = "mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1";

std::string skip_reason() {
  if (!mpi_built()) return "this build has no MPI (install openmpi-bin libopenmpi-dev, scripts/deps.sh, and rebuild)";
  if (std::system("command -v mpirun >/dev/null 2>&1") != 0) return "mpirun is not on PATH (Debian: openmpi-bin)";
  return "";
}
#define SKIP_WITHOUT_MPI()                                  \
  do {                                                      \
    std::string why = skip_reason();                        \
    if (!why.empty()) GTEST_SKIP() << "skipped: " << why;   \
  } while (0)

RunResult mpirun(int np, const std::string& args, const std::string& cwd) {
  return run_raw(fmt::format("{} -np {} '{}' {}", kMpirun, np, strata_bin(), args), cwd);
}
RunResult single(const std::string& args, const std::string& cwd) { return run_raw("OMP_NUM_THREADS=1 '" + strata_bin() + "' " + args, cwd); }

std::string newest(const std::string& run_dir) {
  auto c = newest_good_checkpoint(run_dir, nullptr);
  EXPECT_TRUE(c.has_value()) << "no checkpoint in " << run_dir;
  return c.value_or("");
}

int count_checkpoints(const std::string& run_dir) {
  int n = 0;
  for (auto& e : fs::directory_iterator(run_dir)) {
    std::string f = e.path().filename().string();
    n += f.rfind("ckpt-", 0) == 0 && e.path().extension() == ".h5";
  }
  return n;
}

// The pid of the strata process of the given rank whose working directory is `cwd` (0: none yet).
pid_t rank_pid(const std::string& cwd, int rank) {
  std::string want = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
  for (auto& e : fs::directory_iterator("/proc")) {
    std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code ec;
    if (fs::read_symlink(e.path() / "cwd", ec) != fs::path(cwd) || ec) continue;
    std::ifstream env(e.path() / "environ", std::ios::binary);
    std::string var;
    bool ours = false;
    while (std::getline(env, var, '\0')) ours |= var == want;
    std::ifstream cmd(e.path() / "cmdline", std::ios::binary);
    std::string argv0;
    std::getline(cmd, argv0, '\0');
    if (ours && argv0.find("strata") != std::string::npos) return pid_t(std::stoi(name));
  }
  return 0;
}

// Starts `command` in cwd; the caller waits for it.
pid_t spawn(const std::string& command, const std::string& cwd) {
  std::string cmd = "cd '" + cwd + "' && exec " + command + " > out.log 2>&1";
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), (char*)nullptr);
    _exit(127);
  }
  return pid;
}

// Waits for pid at most `seconds` (a hang guard, not a timing check); kills it on expiry.
int wait_exit(pid_t pid, int seconds, bool* hung) {
  *hung = false;
  int st = 0;
  for (int i = 0; i < seconds * 10; ++i) {
    if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  *hung = true;
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
  return -1;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Waits until the run has written metrics (training is under way).
void wait_for_metrics(const std::string& run_dir) {
  for (int i = 0; i < 600 && !fs::exists(run_dir + "/metrics.jsonl"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
}

// Starts a 2-rank job that would train for ever (`extra`: more overrides), sends `sig` to one rank
// once it trains, and expects every rank to stop at once, exit 0 and leave exactly one checkpoint,
// which it returns (its step is 0 where something failed).
Checkpoint signal_one_rank(const std::string& d, const std::string& extra, int rank, int sig) {
  write_text(d + "/a.yaml", dp_config(100000));
  pid_t job = spawn(fmt::format("{} -np 2 '{}' train a.yaml train.run_dir=r train.save_every=0 {} --quiet", kMpirun,
                                strata_bin(), extra),
                    d);
  if (job <= 0) return ADD_FAILURE() << "could not start mpirun", Checkpoint{};
  wait_for_metrics(d + "/r");
  pid_t pid = rank_pid(d, rank);
  if (pid <= 0) {
    kill(job, SIGKILL);
    waitpid(job, nullptr, 0);
    return ADD_FAILURE() << "rank " << rank << " not found; log:\n" << slurp(d + "/out.log"), Checkpoint{};
  }
  kill(pid, sig);
  bool hung = false;
  int code = wait_exit(job, 300, &hung);
  if (hung) return ADD_FAILURE() << "the job did not stop:\n" << slurp(d + "/out.log"), Checkpoint{};
  EXPECT_EQ(code, 0) << slurp(d + "/out.log");
  EXPECT_EQ(count_checkpoints(d + "/r"), 1);
  Checkpoint c = load_checkpoint(newest(d + "/r"));  // verified: every tensor, full size, checksums
  EXPECT_GT(c.state.step, 0);
  EXPECT_NE(slurp(d + "/out.log").find("interrupted at step " + std::to_string(c.state.step)), std::string::npos)
      << slurp(d + "/out.log");
  return c;
}

}  // namespace

TEST(DataParallel, TwoRanksMatchOneProcessOnTheSameGlobalBatch) {
  SKIP_WITHOUT_MPI();
  std::string d = scratch_dir("dp_equal");
  write_text(d + "/a.yaml", dp_config(20));
  auto one = single("train a.yaml train.run_dir=one --quiet", d);
  ASSERT_EQ(one.code, 0) << one.out;
  auto two = mpirun(2, "train a.yaml train.run_dir=two --quiet", d);
  ASSERT_EQ(two.code, 0) << two.out;
  // One summary for the job, from rank 0.
  EXPECT_EQ(two.out.find("done at step 20"), two.out.rfind("done at step 20")) << two.out;
  Checkpoint a = load_checkpoint(newest(d + "/one")), b = load_checkpoint(newest(d + "/two"));
  EXPECT_EQ(a.state, b.state);  // step, data stream position, tokens: the same global batches
  // Not bitwise: one process sums the batch's rows inside each GEMM, two ranks sum halves and then
  // add them, a different order of the same float additions.
  EXPECT_LE(max_abs_diff(a.params, b.params, "params after 20 steps, 1 process vs 2 ranks"), 1e-6);
  EXPECT_LE(max_abs_diff(a.adam_m, b.adam_m, "AdamW m"), 1e-6);
  // The sums moved along by a thread of their own (opt-in) are the same sums.
  auto threaded = run_raw(fmt::format("STRATA_MPI_SUM_THREAD=1 {} -x STRATA_MPI_SUM_THREAD -np 2 '{}' train a.yaml "
                                      "train.run_dir=threaded --quiet", kMpirun, strata_bin()), d);
  ASSERT_EQ(threaded.code, 0) << threaded.out;
  EXPECT_EQ(max_abs_diff(b.params, load_checkpoint(newest(d + "/threaded")).params, "main-thread polling vs sum thread"), 0.0);
  // Only rank 0 wrote the metrics: one line per logged step.
  std::string m = slurp(d + "/two/metrics.jsonl");
  EXPECT_NE(m.find("\"dist_ranks\":2"), std::string::npos) << m;
  size_t at20 = 0;
  for (size_t p = m.find("\"step\":20,"); p != std::string::npos; p = m.find("\"step\":20,", p + 1)) ++at20;
  EXPECT_EQ(at20, 2u) << m;  // the train record and the val record, once each
}

// A synthetic task (train/synthetic_data.h): the ranks generate only their rows of the same global
// batch, and share the accuracy evaluation (at train.seq and data.eval_seqs), whose counts they sum.
TEST(DataParallel, SyntheticTaskMatchesOneProcess) {
  SKIP_WITHOUT_MPI();
  std::string d = scratch_dir("dp_synthetic");
  write_text(d + "/a.yaml",
             "model: {d_model: 32, pattern: \"*-\", attention: {heads: 4}, mlp: {hidden: 64}}\n"
             "train: {steps: 20, batch: 8, seq: 32, seed: 1, eval_every: 10, eval_batches: 3, save_every: 0, log_every: 10}\n"
             "optim: {lr: 3.0e-3, warmup: 5}\n"
             "data: {kind: selective_copying, eval_seqs: \"64\", selective_copying: {vocab: 8, tokens: 4}}\n");
  auto one = single("train a.yaml train.run_dir=one --quiet", d);
  ASSERT_EQ(one.code, 0) << one.out;
  auto two = mpirun(2, "train a.yaml train.run_dir=two --quiet", d);
  ASSERT_EQ(two.code, 0) << two.out;
  Checkpoint a = load_checkpoint(newest(d + "/one")), b = load_checkpoint(newest(d + "/two"));
  EXPECT_EQ(a.state, b.state);
  EXPECT_LE(max_abs_diff(a.params, b.params, "params after 20 steps, 1 process vs 2 ranks"), 1e-6);
  auto evals = [&](const std::string& run) {
    std::vector<std::string> acc;
    std::istringstream in(slurp(d + "/" + run + "/metrics.jsonl"));
    for (std::string line; std::getline(in, line);)
      if (size_t p = line.find("\"val_acc@64\":"); p != std::string::npos) acc.push_back(line.substr(p, line.find(',', p) - p));
    return acc;
  };
  EXPECT_EQ(evals("one").size(), 2u);
  EXPECT_EQ(evals("one"), evals("two")) << "the same accuracy: counts summed over the ranks";
}

TEST(DataParallel, ResumesFromTwoRanksInOneProcess) {
  SKIP_WITHOUT_MPI();
  std::string d = scratch_dir("dp_resume");
  write_text(d + "/a.yaml", dp_config(20));
  auto first = mpirun(2, "train a.yaml train.run_dir=r --quiet --stop-after 10", d);
  ASSERT_EQ(first.code, 0) << first.out;
  EXPECT_EQ(load_checkpoint(newest(d + "/r")).state.step, 10);
  auto second = single("train a.yaml train.run_dir=r --quiet --resume", d);
  ASSERT_EQ(second.code, 0) << second.out;
  auto whole = single("train a.yaml train.run_dir=whole --quiet", d);
  ASSERT_EQ(whole.code, 0) << whole.out;
  Checkpoint a = load_checkpoint(newest(d + "/r")), b = load_checkpoint(newest(d + "/whole"));
  EXPECT_EQ(a.state, b.state);
  EXPECT_LE(max_abs_diff(a.params, b.params, "params: 10 steps on 2 ranks + 10 in 1 process vs 20 in 1"), 1e-6);
}

TEST(DataParallel, SigtermToOneRankStopsEveryRankWithOneCheckpoint) {
  SKIP_WITHOUT_MPI();
  std::string d = scratch_dir("dp_sigterm");
  Checkpoint c = signal_one_rank(d, "", 1, SIGTERM);
  // And the requeued job goes on from it.
  auto resumed = mpirun(2, "train a.yaml train.run_dir=r train.steps=" + std::to_string(c.state.step + 2) + " --quiet --resume", d);
  EXPECT_EQ(resumed.code, 0) << resumed.out;
}

// Slurm's warning before the time limit (sbatch --signal=USR1@90) reaches every task; one is enough.
TEST(DataParallel, Sigusr1ToRankZeroStopsEveryRankWithOneCheckpoint) {
  SKIP_WITHOUT_MPI();
  signal_one_rank(scratch_dir("dp_usr1"), "", 0, SIGUSR1);
}

// ZeRO-1 (train.dist_zero1): each rank updates its shard of the parameters with its shard of the
// AdamW moments, and an all-gather brings the rest. AdamW is elementwise, so the parameters and the
// checkpoint's (gathered) moments are bitwise those of the same 2 ranks without it.
TEST(DataParallel, Zero1IsBitwiseTheSameAsTwoRanksWithoutIt) {
  SKIP_WITHOUT_MPI();
  std::string d = scratch_dir("dp_zero1");
  write_text(d + "/a.yaml", dp_config(20));
  auto two = mpirun(2, "train a.yaml train.run_dir=two --quiet", d);
  ASSERT_EQ(two.code, 0) << two.out;
  // Not quiet: the start line says what each rank keeps.
  auto zero = mpirun(2, "train a.yaml train.run_dir=zero train.dist_zero1=true", d);
  ASSERT_EQ(zero.code, 0) << zero.out;
  EXPECT_NE(zero.out.find("ZeRO-1: AdamW moments sharded"), std::string::npos) << zero.out;
  Checkpoint a = load_checkpoint(newest(d + "/two")), b = load_checkpoint(newest(d + "/zero"));
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(max_abs_diff(a.params, b.params, "params after 20 steps, 2 ranks vs 2 ranks ZeRO-1"), 0.0);
  EXPECT_EQ(max_abs_diff(a.adam_m, b.adam_m, "AdamW m, gathered for the checkpoint"), 0.0);
  EXPECT_EQ(max_abs_diff(a.adam_v, b.adam_v, "AdamW v, gathered for the checkpoint"), 0.0);
  std::string m = slurp(d + "/zero/metrics.jsonl");
  EXPECT_NE(m.find("\"comm_allgather_ms\""), std::string::npos) << m;
  // Three ranks split the parameters unevenly where 3 does not divide their count.
  int64_t P = 0;
  for (auto& t : a.params) P += int64_t(t.data.size());
  std::printf("%lld parameters: shards of %lld floats over 3 ranks\n", (long long)P, (long long)shard_range(P, 3, 2).size());
  auto three = mpirun(3, "train a.yaml train.run_dir=three train.batch=6 --quiet", d);
  ASSERT_EQ(three.code, 0) << three.out;
  auto three_z = mpirun(3, "train a.yaml train.run_dir=three_z train.batch=6 train.dist_zero1=true --quiet", d);
  ASSERT_EQ(three_z.code, 0) << three_z.out;
  Checkpoint t = load_checkpoint(newest(d + "/three")), tz = load_checkpoint(newest(d + "/three_z"));
  EXPECT_EQ(max_abs_diff(t.params, tz.params, "params, 3 ranks vs 3 ranks ZeRO-1"), 0.0);
  EXPECT_EQ(max_abs_diff(t.adam_m, tz.adam_m, "AdamW m, 3 ranks"), 0.0);
  // bf16: the layers read the bf16 shadow, which must be refreshed from the gathered parameters.
  auto bf = mpirun(2, "train a.yaml train.run_dir=bf train.precision=bf16 train.steps=10 --quiet", d);
  ASSERT_EQ(bf.code, 0) << bf.out;
  auto bf_z = mpirun(2, "train a.yaml train.run_dir=bf_z train.precision=bf16 train.steps=10 train.dist_zero1=true --quiet", d);
  ASSERT_EQ(bf_z.code, 0) << bf_z.out;
  EXPECT_EQ(max_abs_diff(load_checkpoint(newest(d + "/bf")).params, load_checkpoint(newest(d + "/bf_z")).params,
                         "params, bf16, 2 ranks vs 2 ranks ZeRO-1"),
            0.0);
  // Switched on halfway (the full moments scattered at resume) and off again (gathered at the save):
  // still the same run, bit for bit.
  auto half = mpirun(2, "train a.yaml train.run_dir=half --quiet --stop-after 10", d);
  ASSERT_EQ(half.code, 0) << half.out;
  auto on = mpirun(2, "train a.yaml train.run_dir=half train.dist_zero1=true --quiet --resume --stop-after 5", d);
  ASSERT_EQ(on.code, 0) << on.out;
  auto off = mpirun(2, "train a.yaml train.run_dir=half --quiet --resume", d);
  ASSERT_EQ(off.code, 0) << off.out;
  Checkpoint c = load_checkpoint(newest(d + "/half"));
  EXPECT_EQ(a.state, c.state);
  EXPECT_EQ(max_abs_diff(a.params, c.params, "params: 10 steps + 5 with ZeRO-1 + 5 without vs 20 without"), 0.0);
  EXPECT_EQ(max_abs_diff(a.adam_v, c.adam_v, "AdamW v, the same"), 0.0);
}

// Checkpoints hold the full moments whatever the world size and ZeRO-1 were, so a ZeRO-1 run resumes
// in one process and a one-process run resumes as 2 ZeRO-1 ranks, each continuing the run.
TEST(DataParallel, Zero1ResumesAtAnotherWorldSize) {
  SKIP_WITHOUT_MPI();
  std::string d = scratch_dir("dp_zero1_resume");
  write_text(d + "/a.yaml", dp_config(20));
  auto whole = single("train a.yaml train.run_dir=whole --quiet", d);
  ASSERT_EQ(whole.code, 0) << whole.out;
  Checkpoint w = load_checkpoint(newest(d + "/whole"));

  auto first = mpirun(2, "train a.yaml train.run_dir=r train.dist_zero1=true --quiet --stop-after 10", d);
  ASSERT_EQ(first.code, 0) << first.out;
  EXPECT_EQ(load_checkpoint(newest(d + "/r")).state.step, 10);
  auto second = single("train a.yaml train.run_dir=r train.dist_zero1=true --quiet --resume", d);  // a no-op alone
  ASSERT_EQ(second.code, 0) << second.out;
  Checkpoint a = load_checkpoint(newest(d + "/r"));
  EXPECT_EQ(a.state, w.state);
  // Not bitwise: 2 ranks sum the batch's halves in another order than one process (see above).
  EXPECT_LE(max_abs_diff(a.params, w.params, "params: 10 steps on 2 ZeRO-1 ranks + 10 in 1 process vs 20 in 1"), 1e-6);
  EXPECT_LE(max_abs_diff(a.adam_m, w.adam_m, "AdamW m"), 1e-6);

  auto one = single("train a.yaml train.run_dir=s --quiet --stop-after 10", d);
  ASSERT_EQ(one.code, 0) << one.out;
  auto two = mpirun(2, "train a.yaml train.run_dir=s train.dist_zero1=true --quiet --resume", d);
  ASSERT_EQ(two.code, 0) << two.out;
  Checkpoint b = load_checkpoint(newest(d + "/s"));
  EXPECT_EQ(b.state, w.state);
  EXPECT_LE(max_abs_diff(b.params, w.params, "params: 10 steps in 1 process + 10 on 2 ZeRO-1 ranks vs 20 in 1"), 1e-6);
  EXPECT_LE(max_abs_diff(b.adam_m, w.adam_m, "AdamW m"), 1e-6);
  EXPECT_LE(max_abs_diff(b.adam_v, w.adam_v, "AdamW v"), 1e-6);
}

TEST(DataParallel, Zero1SigtermStopsWithOneGoodCheckpoint) {
  SKIP_WITHOUT_MPI();
  std::string d = scratch_dir("dp_zero1_sigterm");
  Checkpoint c = signal_one_rank(d, "train.dist_zero1=true", 1, SIGTERM);
  // Rank 1's shard of the moments (the end of the buffer) was gathered, not left at zero.
  ASSERT_FALSE(c.adam_v.empty());
  double last = 0;
  for (float x : c.adam_v.back().data) last += double(x);
  EXPECT_GT(last, 0.0) << c.adam_v.back().name;
  auto resumed = mpirun(2, "train a.yaml train.run_dir=r train.dist_zero1=true train.steps=" + std::to_string(c.state.step + 2) +
                               " --quiet --resume", d);
  EXPECT_EQ(resumed.code, 0) << resumed.out;
}

TEST(DataParallel, KilledRankEndsTheJob) {
  SKIP_WITHOUT_MPI();
  std::string d = scratch_dir("dp_kill");
  write_text(d + "/a.yaml", dp_config(100000));
  // A short collective timeout: whether mpirun notices the death or the survivor's wait runs out,
  // the job must end, with a non-zero code, instead of waiting forever.
  pid_t job = spawn(fmt::format("{} -np 2 '{}' train a.yaml train.run_dir=r train.dist_timeout_s=20 --quiet", kMpirun,
                                strata_bin()),
                    d);
  ASSERT_GT(job, 0);
  wait_for_metrics(d + "/r");
  pid_t r1 = rank_pid(d, 1);
  ASSERT_GT(r1, 0) << "rank 1 not found; log:\n" << slurp(d + "/out.log");
  kill(r1, SIGKILL);
  bool hung = false;
  int code = wait_exit(job, 300, &hung);
  ASSERT_FALSE(hung) << "the job still ran 300 s after rank 1 was killed:\n" << slurp(d + "/out.log");
  EXPECT_NE(code, 0) << slurp(d + "/out.log");
}

TEST(DataParallel, HungRankAbortsTheJobWithAMessage) {
  SKIP_WITHOUT_MPI();
  std::string d = scratch_dir("dp_hang");
  write_text(d + "/a.yaml", dp_config(100000));
  // A stopped rank is alive to mpirun; only the collectives' deadline can end this job.
  pid_t job = spawn(fmt::format("{} -np 2 '{}' train a.yaml train.run_dir=r train.dist_timeout_s=5 --quiet", kMpirun,
                                strata_bin()),
                    d);
  ASSERT_GT(job, 0);
  wait_for_metrics(d + "/r");
  pid_t r1 = rank_pid(d, 1);
  ASSERT_GT(r1, 0) << "rank 1 not found; log:\n" << slurp(d + "/out.log");
  kill(r1, SIGSTOP);
  bool hung = false;
  int code = wait_exit(job, 300, &hung);
  ASSERT_FALSE(hung) << "the job still ran 300 s after rank 1 stopped:\n" << slurp(d + "/out.log");
  EXPECT_NE(code, 0);
  EXPECT_NE(slurp(d + "/out.log").find("did not finish within train.dist_timeout_s=5 s"), std::string::npos)
      << slurp(d + "/out.log");
}

TEST(DataParallel, RefusesAGlobalBatchThatDoesNotSplit) {
  SKIP_WITHOUT_MPI();
  std::string d = scratch_dir("dp_batch");
  write_text(d + "/a.yaml", dp_config(4));
  auto r = mpirun(2, "train a.yaml train.batch=3 --quiet", d);
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("train.batch=3 is the global batch"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(d + "/runs/a/config.yaml")) << "nothing is written for a refused run";
}

TEST(DataParallel, SrunTasksThatMpiDoesNotConnectAreRefused) {
  SKIP_WITHOUT_MPI();
  std::string d = scratch_dir("dp_srun");
  write_text(d + "/a.yaml", dp_config(4));
  // What each task of `srun -n 2` without --mpi=pmix sees: Slurm says 2, MPI starts a singleton.
  auto r = run_raw("SLURM_PROCID=0 SLURM_STEP_NUM_TASKS=2 '" + strata_bin() + "' train a.yaml --quiet", d);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("srun --mpi=pmix"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(d + "/runs/a")) << "nothing is written for a refused run";
}

TEST(DataParallel, BuildWithoutMpiRefusesSeveralRanks) {
  if (mpi_built()) GTEST_SKIP() << "skipped: this build has MPI (the refusal is for builds without it)";
  std::string d = scratch_dir("dp_nompi");
  write_text(d + "/a.yaml", dp_config(4));
  auto r = run_raw("OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=0 '" + strata_bin() + "' train a.yaml --quiet", d);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("built without MPI"), std::string::npos) << r.out;
}
