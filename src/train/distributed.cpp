#include "train/distributed.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <memory>

#include "kernels/cpu/elementwise.h"
#include "kernels/dispatch.h"
#include "train/distributed_mpi.h"

namespace strata {

namespace {

class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "single process"; }
  void set_timeout(double) override {}
  void start_sum(float*, int64_t) override {}
  void progress() override {}
  void wait_all(const std::string&) override {}
  void sum(double*, int, const std::string&) override {}
  void broadcast(void*, size_t, int, const std::string&) override {}
  void barrier(const std::string&) override {}
  // A world of one: its block is the whole buffer, already everywhere it needs to be.
  void all_gather(float*, const std::vector<int64_t>&, const std::string&) override {}
  void gather(float*, const std::vector<int64_t>&, int, const std::string&) override {}
  void scatter(float*, const std::vector<int64_t>&, int, const std::string&) override {}
  [[noreturn]] void abort_job(const std::string& message) override {
    fmt::print(stderr, "strata: {}\n", message);
    std::exit(1);
  }
};

// The first of `names` that is set, as an integer (-1 when none is).
int env_int(std::initializer_list<const char*> names, const char** which) {
  for (const char* n : names) {
    const char* v = std::getenv(n);
    if (v && *v) {
      *which = n;
      return std::atoi(v);
    }
  }
  return -1;
}

std::unique_ptr<Communicator> make_world() {
  // Slurm's SLURM_NTASKS is also set in the batch script itself (one process); only a task that srun
  // started has SLURM_STEP_NUM_TASKS together with SLURM_PROCID.
  const char* which = nullptr;
  int n = env_int({"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"}, &which);
  if (n < 0 && std::getenv("SLURM_PROCID")) n = env_int({"SLURM_STEP_NUM_TASKS"}, &which);
  if (n <= 1) return std::make_unique<SingleProcess>();
  if (!mpi_built())
    throw InputError(fmt::format("this process is one of {} ({}={}), but this strata binary was built without MPI, so it "
                                 "cannot train data-parallel: install an MPI (Debian: openmpi-bin libopenmpi-dev, "
                                 "scripts/deps.sh) and rebuild, or run a single process",
                                 n, which, n));
#ifdef STRATA_HAVE_MPI
  auto c = make_mpi_communicator();
  // srun without MPI support (no --mpi=pmix) starts N singletons: each would train alone.
  if (c->size() != n)
    throw InputError(fmt::format("{}={}, but MPI sees a world of {}: the launcher did not connect the processes "
                                 "to each other; under Slurm use srun --mpi=pmix (or MpiDefault=pmix in slurm.conf), "
                                 "or start the job with mpirun",
                                 which, n, c->size()));
  return c;
#else
  std::abort();  // unreachable: mpi_built() is false
#endif
}

}  // namespace

bool mpi_built() {
#ifdef STRATA_HAVE_MPI
  return true;
#else
  return false;
#endif
}

Communicator& world() {
  static std::unique_ptr<Communicator> w = make_world();
  return *w;
}

// ---- ZeRO-1 shards -----------------------------------------------------------------------------

ShardRange shard_range(int64_t n, int world, int rank) {
  if (world < 1 || rank < 0 || rank >= world || n < 0)
    throw Error(fmt::format("shard_range: rank {} of a world of {} over {} floats", rank, world, n));
  const int64_t base = n / world, extra = n % world;
  // Ranks below `extra` own base + 1 floats, the rest base.
  const int64_t lo = rank * base + std::min<int64_t>(rank, extra);
  return {lo, lo + base + (rank < extra ? 1 : 0)};
}

std::vector<int64_t> shard_counts(int64_t n, int world) {
  std::vector<int64_t> c(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) c[size_t(r)] = shard_range(n, world, r).size();
  return c;
}

// ---- GradReducer -------------------------------------------------------------------------------

GradReducer::GradReducer(Communicator& comm, Device device, int64_t numel, int64_t bucket_floats, bool overlap)
    : comm_(comm), device_(device), numel_(numel), overlap_(overlap) {
  bucket_floats = std::max<int64_t>(bucket_floats, 1);
  for (int64_t end = numel; end > 0; end -= bucket_floats) starts_.push_back(std::max<int64_t>(0, end - bucket_floats));
}

void GradReducer::begin(float* grad) {
  grad_ = grad;
  next_ = 0;
}

void GradReducer::start(size_t k) {
  int64_t end = k ? starts_[k - 1] : numel_;
  comm_.start_sum(grad_ + starts_[k], end - starts_[k]);
  ++stats_.buckets;
}

namespace {
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}
}  // namespace

void GradReducer::from(int64_t offset) {
  if (!overlap_ || !grad_) return;
  auto t0 = std::chrono::steady_clock::now();
  const double c0 = thread_cpu_seconds();
  bool started = false;
  while (next_ < starts_.size() && starts_[next_] >= offset) {
    start(next_++);
    ++stats_.started_in_backward;
    started = true;
  }
  if (started || next_ > 0) comm_.progress();
  stats_.in_backward_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stats_.in_backward_cpu_s += thread_cpu_seconds() - c0;
}

void GradReducer::finish() {
  auto t0 = std::chrono::steady_clock::now();
  const double c0 = thread_cpu_seconds();
  while (next_ < starts_.size()) start(next_++);
  comm_.wait_all("the gradient all-reduce");
  // A sum over the ranks, made the mean: every rank's loss is the mean over its equal share of the
  // global batch, so the mean of the ranks' gradients is the global batch's gradient.
  if (comm_.size() > 1) STRATA_OP(device_, scale_inplace, grad_, 1.0f / float(comm_.size()), numel_);
  stats_.wait_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stats_.wait_cpu_s += thread_cpu_seconds() - c0;
  grad_ = nullptr;
}

}  // namespace strata
