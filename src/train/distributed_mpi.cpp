// The MPI communicator: every collective is non-blocking (MPI_Iallreduce, MPI_Ibcast, MPI_Ibarrier,
// MPI_Iallgatherv; ZeRO-1's gather and scatter as MPI_Isend / MPI_Irecv) and waited on by polling against a deadline, because a blocking MPI call whose peer died or hangs
// never returns.
//
// Open MPI moves a non-blocking collective along only inside MPI calls, and backward makes none
// while a layer runs: the main thread polls the started sums after each layer (progress()). With
// STRATA_MPI_SUM_THREAD=1 the sums have a thread of their own instead, which polls them
// (MPI_Testall) every 100 us and sleeps in between (spinning would take a core from backward). It
// is the only thread in MPI while sums are queued or in flight, and the main thread calls MPI only
// when none are (MPI_THREAD_SERIALIZED; the OpenMP threads only compute).
#ifdef STRATA_HAVE_MPI
#include "train/distributed_mpi.h"

// The C API only: Open MPI's and MPICH's headers otherwise pull in the removed C++ bindings.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace strata {

namespace {

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

class Mpi final : public Communicator {
 public:
  Mpi() {
    int inited = 0;
    MPI_Initialized(&inited);
    int provided = MPI_THREAD_SINGLE;
    if (!inited) {
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
      std::atexit(finalize_at_exit);  // after this object's destructor, which joins the sum thread
    } else {
      MPI_Query_thread(&provided);
    }
    // Opt-in (STRATA_MPI_SUM_THREAD=1): on the 2-core machine of bench/data_parallel.sh, shared with
    // other work, the thread's wake-ups cost more step time than the sums it moved along (the sums
    // were under 2 % of a step there); it may pay where a rank has a core to spare.
    const char* env = std::getenv("STRATA_MPI_SUM_THREAD");
    threaded_ = provided >= MPI_THREAD_SERIALIZED && env && std::string(env) == "1";
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    char lib[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(lib, &len);
    std::string s(lib, size_t(len));
    version_ = s.substr(0, s.find_first_of(",\n"));
  }

  ~Mpi() override {
    if (!thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    work_cv_.notify_one();
    thread_.join();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "MPI (" + version_ + ")"; }
  void set_timeout(double seconds) override { timeout_s_ = seconds; }

  void start_sum(float* data, int64_t n) override {
    // MPI counts are ints: a larger buffer goes as several sums.
    for (int64_t off = 0; off < n; off += INT_MAX) {
      int count = int(std::min<int64_t>(INT_MAX, n - off));
      if (threaded_) {
        if (!thread_.joinable()) thread_ = std::thread([this] { sum_loop(); });
        std::lock_guard<std::mutex> lk(mu_);
        queued_.push_back({data + off, count});
        active_ = true;
      } else {
        pending_.emplace_back();
        MPI_Iallreduce(MPI_IN_PLACE, data + off, count, MPI_FLOAT, MPI_SUM, comm_, &pending_.back());
      }
    }
    if (threaded_) work_cv_.notify_one();
  }
  void progress() override {
    if (pending_.empty()) return;  // (the sum thread's own, when there is one)
    int done = 0;
    MPI_Testall(int(pending_.size()), pending_.data(), &done, MPI_STATUSES_IGNORE);
    if (done) pending_.clear();
  }
  void wait_all(const std::string& what) override {
    wait_for_sum_thread(what);
    if (pending_.empty()) return;
    auto t0 = std::chrono::steady_clock::now();
    for (int spins = 0;; ++spins) {
      int done = 0;
      MPI_Testall(int(pending_.size()), pending_.data(), &done, MPI_STATUSES_IGNORE);
      if (done) break;
      double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (waited > timeout_s_) abort_job(timeout_message(what));
      // Spin first (a sum between two cores takes microseconds), then give the core away: a rank
      // that waits for a slower one must not slow it down where ranks share cores.
      if (waited < 0.002) sched_yield();
      else std::this_thread::sleep_for(std::chrono::microseconds(waited < 0.1 ? 20 : 500));
    }
    pending_.clear();
  }
  void sum(double* data, int n, const std::string& what) override {
    wait_for_sum_thread(what);  // only one thread in MPI at a time
    pending_.emplace_back();
    MPI_Iallreduce(MPI_IN_PLACE, data, n, MPI_DOUBLE, MPI_SUM, comm_, &pending_.back());
    wait_all(what);
  }
  void broadcast(void* data, size_t bytes, int root, const std::string& what) override {
    wait_for_sum_thread(what);
    auto* p = static_cast<char*>(data);
    for (size_t off = 0; off < bytes; off += size_t(INT_MAX)) {
      int count = int(std::min<size_t>(size_t(INT_MAX), bytes - off));
      pending_.emplace_back();
      MPI_Ibcast(p + off, count, MPI_BYTE, root, comm_, &pending_.back());
    }
    wait_all(what);
  }
  void barrier(const std::string& what) override {
    wait_for_sum_thread(what);
    pending_.emplace_back();
    MPI_Ibarrier(comm_, &pending_.back());
    wait_all(what);
  }
  void all_gather(float* data, const std::vector<int64_t>& counts, const std::string& what) override {
    wait_for_sum_thread(what);
    require_counts(counts, what);
    int64_t total = 0;
    for (int64_t c : counts) total += c;
    // MPI's counts and displacements are ints. cnt and displ must outlive the request: wait_all below.
    std::vector<int> cnt(static_cast<size_t>(size_)), displ(static_cast<size_t>(size_));
    if (total <= INT_MAX) {
      for (int r = 0, off = 0; r < size_; off += cnt[size_t(r)], ++r) cnt[size_t(r)] = int(counts[size_t(r)]), displ[size_t(r)] = off;
      pending_.emplace_back();
      MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, cnt.data(), displ.data(), MPI_FLOAT, comm_,
                      &pending_.back());
    } else {
      // A buffer past INT_MAX floats: one broadcast per block instead, in pieces of at most INT_MAX.
      int64_t off = 0;
      for (int r = 0; r < size_; off += counts[size_t(r)], ++r)
        for (int64_t o = 0; o < counts[size_t(r)]; o += INT_MAX) {
          pending_.emplace_back();
          MPI_Ibcast(data + off + o, int(std::min<int64_t>(INT_MAX, counts[size_t(r)] - o)), MPI_FLOAT, r, comm_,
                     &pending_.back());
        }
    }
    wait_all(what);
  }
  // Gather and scatter serve checkpoints (not every step): point-to-point messages between root and
  // each rank, in pieces of at most INT_MAX floats, so no int count or displacement limits the size.
  void gather(float* data, const std::vector<int64_t>& counts, int root, const std::string& what) override {
    wait_for_sum_thread(what);
    require_counts(counts, what);
    exchange_blocks(data, counts, root, /*to_root=*/true);
    wait_all(what);
  }
  void scatter(float* data, const std::vector<int64_t>& counts, int root, const std::string& what) override {
    wait_for_sum_thread(what);
    require_counts(counts, what);
    exchange_blocks(data, counts, root, /*to_root=*/false);
    wait_all(what);
  }
  [[noreturn]] void abort_job(const std::string& message) override {
    fmt::print(stderr, "strata: rank {}/{}: {}\n", rank_, size_, message);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::_Exit(1);
  }

 private:
  // Returns once the sum thread has nothing queued or in flight (and so makes no MPI call).
  void wait_for_sum_thread(const std::string& what) {
    if (!threaded_) return;
    std::unique_lock<std::mutex> lk(mu_);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s_);
    if (!done_cv_.wait_until(lk, deadline, [&] { return !active_; })) {
      lk.unlock();
      abort_job(timeout_message(what));
    }
  }

  void require_counts(const std::vector<int64_t>& counts, const std::string& what) const {
    if (int64_t(counts.size()) != size_)
      throw Error(fmt::format("{}: {} block counts for a world of {}", what, counts.size(), size_));
  }

  // Starts the messages of a gather (to_root) or scatter between root's whole buffer and each rank's
  // block. MPI keeps the order of messages between two ranks with one tag, so piece k meets piece k.
  void exchange_blocks(float* data, const std::vector<int64_t>& counts, int root, bool to_root) {
    constexpr int kTag = 7201;
    auto pieces = [&](float* p, int64_t n, int peer, bool send) {
      for (int64_t o = 0; o < n; o += INT_MAX) {
        int c = int(std::min<int64_t>(INT_MAX, n - o));
        pending_.emplace_back();
        if (send) MPI_Isend(p + o, c, MPI_FLOAT, peer, kTag, comm_, &pending_.back());
        else MPI_Irecv(p + o, c, MPI_FLOAT, peer, kTag, comm_, &pending_.back());
      }
    };
    if (rank_ != root) return pieces(data, counts[size_t(rank_)], root, /*send=*/to_root);
    int64_t off = 0;
    for (int r = 0; r < size_; off += counts[size_t(r)], ++r)
      if (r != root) pieces(data + off, counts[size_t(r)], r, /*send=*/!to_root);
  }

  std::string timeout_message(const std::string& what) const {
    return fmt::format("{} did not finish within train.dist_timeout_s={} s: another rank died, hangs, or is that much "
                       "slower (a long checkpoint save or evaluation on rank 0 counts); aborting the job",
                       what, timeout_s_);
  }

  // The sum thread: starts the queued sums and polls them until every one is done, then sleeps
  // until more are queued. Only it touches `inflight`.
  void sum_loop() {
    std::vector<MPI_Request> inflight;
    std::vector<Queued> take;
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      work_cv_.wait(lk, [&] { return stop_ || !queued_.empty(); });
      if (stop_) return;
      for (;;) {
        take.swap(queued_);
        lk.unlock();
        for (auto& q : take) {
          inflight.emplace_back();
          MPI_Iallreduce(MPI_IN_PLACE, q.data, q.count, MPI_FLOAT, MPI_SUM, comm_, &inflight.back());
        }
        take.clear();
        int done = 0;
        MPI_Testall(int(inflight.size()), inflight.data(), &done, MPI_STATUSES_IGNORE);
        if (done) inflight.clear();
        lk.lock();
        if (inflight.empty() && queued_.empty()) {
          active_ = false;
          done_cv_.notify_all();
          break;
        }
        if (!queued_.empty()) continue;
        // Polling every 100 us costs backward a few percent of a core, and adds at most that to
        // each round of a sum.
        work_cv_.wait_for(lk, std::chrono::microseconds(100), [&] { return stop_ || !queued_.empty(); });
        if (stop_) return;
      }
    }
  }

  struct Queued {
    float* data;
    int count;
  };
  bool threaded_ = false;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::vector<Queued> queued_;  // started by the main thread, not yet handed to MPI
  bool active_ = false;         // sums queued or in flight
  bool stop_ = false;

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  double timeout_s_ = 600;
  std::string version_;
  std::vector<MPI_Request> pending_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator() { return std::make_unique<Mpi>(); }

}  // namespace strata
#endif
