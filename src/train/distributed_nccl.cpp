// NCCL for the gradient sums (see train/distributed_nccl.h). A bucket's sum waits (on NCCL's own
// stream) for an event recorded on the compute stream when backward reported the bucket final, so
// the compute stream never waits for the network until the optimizer step needs the sums. Waiting
// polls an event against the deadline and NCCL's asynchronous error; on expiry the NCCL
// communicator is aborted (freeing the GPU) and the job ends through the host communicator.
#include "train/distributed_nccl.h"

#include <cstdlib>

#ifdef STRATA_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "core/device_cuda.h"
#endif

namespace strata {

#ifndef STRATA_HAVE_NCCL

bool nccl_built() { return false; }

static InputError no_nccl() {
  return InputError("train.device: cuda with several processes needs NCCL, and this strata binary was built without it "
                    "(a CUDA build finds it when installed: libnccl-dev); use "
                    "train.device=cpu or a single process");
}
void select_local_gpu(const Communicator&) { throw no_nccl(); }
std::unique_ptr<Communicator> make_nccl_communicator(Communicator&) { throw no_nccl(); }

#else

bool nccl_built() { return true; }

namespace {

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(fmt::format("{}: {}", what, cudaGetErrorString(e)));
}
void nccl_check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw Error(fmt::format("{}: {}", what, ncclGetErrorString(r)));
}

class Nccl final : public Communicator {
 public:
  explicit Nccl(Communicator& host) : host_(host) {
    ncclUniqueId id{};
    if (host.rank() == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    host.broadcast(&id, sizeof id, 0, "the NCCL communicator's id");
    nccl_check(ncclCommInitRank(&comm_, host.size(), id, host.rank()), "ncclCommInitRank");
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    cuda_check(cudaEventCreateWithFlags(&final_, cudaEventDisableTiming), "cudaEventCreate");
    cuda_check(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreate");
  }
  ~Nccl() override {
    cudaEventDestroy(final_);
    cudaEventDestroy(done_);
    cudaStreamDestroy(stream_);
    if (comm_) ncclCommDestroy(comm_);
  }

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  std::string backend() const override {
    int v = 0;
    ncclGetVersion(&v);
    return fmt::format("NCCL {}.{}.{} (host: {})", v / 10000, v / 100 % 100, v % 100, host_.backend());
  }
  void set_timeout(double seconds) override {
    timeout_s_ = seconds;
    host_.set_timeout(seconds);
  }

  // data: device memory that the compute stream (core's current stream) has finished writing.
  void start_sum(float* data, int64_t n) override {
    cuda_check(cudaEventRecord(final_, cuda::current_stream()), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(stream_, final_, 0), "cudaStreamWaitEvent");
    nccl_check(ncclAllReduce(data, data, size_t(n), ncclFloat, ncclSum, comm_, stream_), "ncclAllReduce");
    pending_ = true;
  }
  void progress() override {}  // the GPU progresses on its own
  void wait_all(const std::string& what) override {
    if (!pending_) return;
    cuda_check(cudaEventRecord(done_, stream_), "cudaEventRecord");
    auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      cudaError_t q = cudaEventQuery(done_);
      if (q == cudaSuccess) break;
      if (q != cudaErrorNotReady) cuda_check(q, "waiting for the NCCL sums");
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (async != ncclSuccess || waited > timeout_s_) {
        std::string why = async != ncclSuccess ? fmt::format("NCCL failed: {}", ncclGetErrorString(async))
                                               : fmt::format("did not finish within train.dist_timeout_s={} s", timeout_s_);
        ncclCommAbort(comm_);
        comm_ = nullptr;
        host_.abort_job(fmt::format("{} (NCCL) {}: another rank died, hangs, or is that much slower; aborting the job",
                                    what, why));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(waited < 0.01 ? 5 : 200));
    }
    // The optimizer step, on the compute stream, reads the sums.
    cuda_check(cudaStreamWaitEvent(cuda::current_stream(), done_, 0), "cudaStreamWaitEvent");
    pending_ = false;
  }
  void sum(double* data, int n, const std::string& what) override { host_.sum(data, n, what); }
  void broadcast(void* data, size_t bytes, int root, const std::string& what) override {
    host_.broadcast(data, bytes, root, what);
  }
  void barrier(const std::string& what) override { host_.barrier(what); }
  // data: device memory whose own block the compute stream has just written (the optimizer step).
  // Equal blocks are one ncclAllGather (in place: this rank's block sits at rank * count); unequal
  // ones (the split of a size that the world does not divide) one in-place broadcast per block,
  // grouped so that NCCL runs them together.
  void all_gather(float* data, const std::vector<int64_t>& counts, const std::string& what) override {
    if (int64_t(counts.size()) != size())
      throw Error(fmt::format("{}: {} block counts for a world of {}", what, counts.size(), size()));
    cuda_check(cudaEventRecord(final_, cuda::current_stream()), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(stream_, final_, 0), "cudaStreamWaitEvent");
    bool equal = std::all_of(counts.begin(), counts.end(), [&](int64_t c) { return c == counts[0]; });
    if (equal) {
      size_t n = size_t(counts[0]);
      nccl_check(ncclAllGather(data + size_t(rank()) * n, data, n, ncclFloat, comm_, stream_), "ncclAllGather");
    } else {
      nccl_check(ncclGroupStart(), "ncclGroupStart");
      int64_t off = 0;
      for (int r = 0; r < size(); off += counts[size_t(r)], ++r)
        nccl_check(ncclBroadcast(data + off, data + off, size_t(counts[size_t(r)]), ncclFloat, r, comm_, stream_),
                   "ncclBroadcast");
      nccl_check(ncclGroupEnd(), "ncclGroupEnd");
    }
    pending_ = true;
    wait_all(what);
  }
  // Checkpoint-time, on host copies of the moments: the host communicator's.
  void gather(float* data, const std::vector<int64_t>& counts, int root, const std::string& what) override {
    host_.gather(data, counts, root, what);
  }
  void scatter(float* data, const std::vector<int64_t>& counts, int root, const std::string& what) override {
    host_.scatter(data, counts, root, what);
  }
  [[noreturn]] void abort_job(const std::string& message) override {
    host_.abort_job(message);
    std::abort();  // not reached
  }

 private:
  Communicator& host_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t final_ = nullptr, done_ = nullptr;
  double timeout_s_ = 600;
  bool pending_ = false;
};

int local_rank(const Communicator& host) {
  for (const char* n : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "LOCAL_RANK"})
    if (const char* v = std::getenv(n); v && *v) return std::atoi(v);
  return host.rank();
}

}  // namespace

void select_local_gpu(const Communicator& host) {
  int n = 0;
  cuda_check(cudaGetDeviceCount(&n), "cudaGetDeviceCount");
  if (n <= 0) throw InputError("train.device: cuda: no CUDA device on this node");
  cuda_check(cudaSetDevice(local_rank(host) % n), "cudaSetDevice");
}

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& host) { return std::make_unique<Nccl>(host); }

#endif

}  // namespace strata
