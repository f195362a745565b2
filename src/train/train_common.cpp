#include "train/train_common.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <csignal>
#include <ctime>
#include <thread>

#include "core/error.h"

namespace strata {

namespace {
std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) { g_signal.store(sig); }
}  // namespace

struct SignalGuard::Saved {
  struct sigaction old_int{}, old_term{}, old_usr1{};
  sigset_t stop_signals{}, old_mask{};
  std::atomic<bool> quit{false};
  std::thread watcher;
};

namespace {
// Blocks (or unblocks) the stop signals in this thread and in every thread of the OpenMP team that
// runs the kernels (threads the team adds later inherit the mask of the thread that creates them).
void block_in_compute_threads(const sigset_t& set, bool block) {
  pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, nullptr);
#pragma omp parallel
  pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, nullptr);
}
}  // namespace

SignalGuard::SignalGuard() : old_(new Saved) {
  g_signal.store(0);
  // The handler stays for threads that still take the signals (a library's own, e.g. MPI's).
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_->old_int);
  sigaction(SIGTERM, &sa, &old_->old_term);
  sigaction(SIGUSR1, &sa, &old_->old_usr1);  // Slurm's warning before the time limit (--signal=USR1@90)
  sigemptyset(&old_->stop_signals);
  for (int s : {SIGINT, SIGTERM, SIGUSR1}) sigaddset(&old_->stop_signals, s);
  pthread_sigmask(SIG_BLOCK, nullptr, &old_->old_mask);
  block_in_compute_threads(old_->stop_signals, true);
  // Waits with a timeout so that the destructor can end it; 50 ms is far below a training step.
  old_->watcher = std::thread([s = old_] {
    const timespec tick{0, 50'000'000};
    while (!s->quit.load()) {
      int sig = sigtimedwait(&s->stop_signals, nullptr, &tick);
      if (sig > 0) g_signal.store(sig);
    }
  });
}

SignalGuard::~SignalGuard() {
  old_->quit.store(true);
  old_->watcher.join();
  // A signal that came after the watcher's last wait is still pending: the handler takes it as the
  // signals are unblocked (it only sets the flag, which nobody reads any more).
  block_in_compute_threads(old_->stop_signals, false);
  pthread_sigmask(SIG_SETMASK, &old_->old_mask, nullptr);
  sigaction(SIGINT, &old_->old_int, nullptr);
  sigaction(SIGTERM, &old_->old_term, nullptr);
  sigaction(SIGUSR1, &old_->old_usr1, nullptr);
  delete old_;
}

int pending_signal() { return g_signal.load(); }

std::vector<NamedArray> views_of(const ParamStore& ps, const float* flat) {
  std::vector<NamedArray> out;
  out.reserve(ps.infos().size());
  for (auto& p : ps.infos()) out.push_back({p.name, p.shape, std::vector<float>(flat + p.offset, flat + p.offset + p.numel)});
  return out;
}

void restore_into(const ParamStore& ps, float* flat, const std::vector<NamedArray>& arrays, const std::string& what,
                  const std::string& path) {
  if (arrays.size() != ps.infos().size())
    throw InputError(fmt::format("checkpoint '{}' has {} {} tensors, the model has {}: it was written for a different config",
                                 path, arrays.size(), what, ps.infos().size()));
  for (auto& a : arrays) {
    int i = ps.find(a.name);
    if (i < 0) throw InputError(fmt::format("checkpoint '{}': {} tensor '{}' does not exist in this model (different config)", path, what, a.name));
    auto& info = ps.infos()[size_t(i)];
    if (info.shape != a.shape)
      throw InputError(fmt::format("checkpoint '{}': {} tensor '{}' has shape {}, the model expects {} (different config)", path,
                                   what, a.name, shape_str(a.shape), shape_str(info.shape)));
    std::copy(a.data.begin(), a.data.end(), flat + info.offset);
  }
}

}  // namespace strata
