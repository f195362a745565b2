#pragma once
// Data parallelism across processes (`mpirun -np N strata train CFG`, `srun strata train CFG`): the
// communicator the trainer talks to, and the bucketed gradient all-reduce that overlaps backward.
//
// A Communicator is the world of one training job: rank() of size() processes. The single-process
// one does nothing; the MPI one (train/distributed_mpi.cpp, when the build found MPI) runs every
// collective non-blocking and polls it against a deadline (train.dist_timeout_s), so a dead or hung
// rank ends the job with a message (MPI_Abort) instead of a hang. The NCCL one (GPU ranks,
// train/distributed_nccl.h) sums device memory and hands the host-side collectives to the MPI one.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/error.h"
#include "layers/block.h"

namespace strata {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "single process", "MPI (Open MPI 4.1.4)"
  // Seconds any collective may wait before the job is aborted.
  virtual void set_timeout(double seconds) = 0;

  // Starts an in-place sum of data[n] over all ranks; the buffer must not be touched until
  // wait_all() returns. Collectives start in the same order on every rank.
  virtual void start_sum(float* data, int64_t n) = 0;
  // Lets the started sums progress (MPI moves data only inside its calls).
  virtual void progress() = 0;
  // Waits for every started sum; `what` names them in the timeout message.
  virtual void wait_all(const std::string& what) = 0;
  // Blocking collectives (each with the deadline).
  virtual void sum(double* data, int n, const std::string& what) = 0;
  virtual void broadcast(void* data, size_t bytes, int root, const std::string& what) = 0;
  virtual void barrier(const std::string& what) = 0;
  // ZeRO-1's collectives over a float buffer cut into one contiguous block per rank, in rank order:
  // rank r's block holds counts[r] floats (counts has size() entries; see shard_ranges). Blocking,
  // with the deadline.
  //   all_gather: in place on `data`, the whole buffer on every rank: each rank's block goes to all.
  //     The NCCL communicator takes device memory, the others host memory.
  //   gather: to `root`. On root `data` is the whole buffer, its own block already in place; on the
  //     other ranks it is their block alone. Host memory.
  //   scatter: the reverse, from `root`: on root `data` is the whole buffer (its own block stays
  //     where it is), on the others it receives their block. Host memory.
  virtual void all_gather(float* data, const std::vector<int64_t>& counts, const std::string& what) = 0;
  virtual void gather(float* data, const std::vector<int64_t>& counts, int root, const std::string& what) = 0;
  virtual void scatter(float* data, const std::vector<int64_t>& counts, int root, const std::string& what) = 0;
  // Prints "strata: rank r/N: <message>" and ends every rank of the job with exit code 1.
  [[noreturn]] virtual void abort_job(const std::string& message) = 0;
};

// The job's communicator, made once per process from the environment: Open MPI's mpirun
// (OMPI_COMM_WORLD_SIZE), an MPI launcher's PMI_SIZE, or Slurm's srun (SLURM_STEP_NUM_TASKS with
// SLURM_PROCID). With none of them, or a world of one, it is the single-process one and MPI is not
// initialised at all. A world of more than one in a build without MPI is refused (InputError).
Communicator& world();
// Whether this binary was built with MPI (tests skip without it).
bool mpi_built();

// ZeRO-1: the balanced split of a flat buffer of n floats over `world` ranks into contiguous shards,
// in rank order: rank r owns [lo, hi), the first n % world ranks one float more than the others (so
// rank 0's shard starts at 0 and the shards' sizes differ by at most one).
struct ShardRange {
  int64_t lo = 0, hi = 0;
  int64_t size() const { return hi - lo; }
  bool operator==(const ShardRange&) const = default;
};
ShardRange shard_range(int64_t n, int world, int rank);
// Every rank's shard size, in rank order: the counts the Communicator's ZeRO-1 collectives take.
std::vector<int64_t> shard_counts(int64_t n, int world);

// Thrown the same way on every rank at the same point of the run (a refused config, a run that
// diverged): each rank exits with its code and no rank needs to be aborted.
struct AgreedInputError : InputError {
  using InputError::InputError;
};
struct AgreedError : Error {
  using Error::Error;
};

// The averaged gradient of one optimizer step, reduced in buckets of the flat gradient buffer.
// Buckets are cut from the end of the buffer, since backward finishes the parameters declared last
// (head, final norm, last layer) first; a bucket's sum starts as soon as backward reports (GradsFinal)
// that every gradient from its first element on is final, and runs while the earlier layers'
// backward goes on. finish() starts what is left, waits, and divides by the world size.
class GradReducer final : public GradsFinal {
 public:
  // The gradients live on `device` (the communicator must handle its memory: MPI the host's, NCCL
  // the GPU's).
  GradReducer(Communicator& comm, Device device, int64_t numel, int64_t bucket_floats, bool overlap);
  void begin(float* grad);            // before the backward whose gradients are the step's last
  void from(int64_t offset) override;  // GradsFinal
  void finish();

  struct Stats {
    double in_backward_s = 0;  // spent in from(): starting buckets and polling them, during backward
    double wait_s = 0;         // spent in finish(): the sums' time that backward did not hide, and any
                               // wait for a slower rank (the trainer measures that part apart)
    // This thread's CPU time inside the same calls: the work the sums did on this rank's own core
    // (a shared-memory MPI copies and adds inside its calls). Only the rest of the wall time, the
    // wait for a transfer or a peer, is something backward can hide.
    double in_backward_cpu_s = 0, wait_cpu_s = 0;
    int64_t buckets = 0, started_in_backward = 0;
  };
  const Stats& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }
  int64_t bucket_count() const { return int64_t(starts_.size()); }

 private:
  void start(size_t k);
  Communicator& comm_;
  Device device_;
  int64_t numel_;
  bool overlap_;
  std::vector<int64_t> starts_;  // bucket k covers [starts_[k], k ? starts_[k - 1] : numel_)
  size_t next_ = 0;              // the next bucket to start
  float* grad_ = nullptr;
  Stats stats_;
};

}  // namespace strata
