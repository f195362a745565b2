#include "train/train_common.h"

#include <atomic>
#include <csignal>

#include "core/error.h"

namespace strata {

namespace {
std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) { g_signal.store(sig); }
}  // namespace

struct SignalGuard::Saved {
  struct sigaction old_int{}, old_term{}, old_usr1{};
};

SignalGuard::SignalGuard() : old_(new Saved) {
  g_signal.store(0);
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_->old_int);
  sigaction(SIGTERM, &sa, &old_->old_term);
  sigaction(SIGUSR1, &sa, &old_->old_usr1);  // Slurm's warning before the time limit (--signal=USR1@90)
}

SignalGuard::~SignalGuard() {
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
