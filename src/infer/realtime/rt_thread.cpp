#include "infer/realtime/rt_thread.h"

#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include <fmt/format.h>

namespace strata::rt {

namespace {
std::string errno_text(const char* call, int err) {
  return fmt::format("{} failed: {} ({})", call, std::strerror(err), err == EPERM ? "EPERM" : std::to_string(err));
}
}  // namespace

int64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void sleep_until_ns(int64_t mono) {
  timespec ts{time_t(mono / 1000000000), long(mono % 1000000000)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

void wait_until_ns(int64_t mono, int64_t spin_ns) {
  if (spin_ns <= 0) return sleep_until_ns(mono);
  if (mono - spin_ns > mono_ns()) sleep_until_ns(mono - spin_ns);
  while (mono_ns() < mono) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();  // lets a sibling hyperthread run, and costs the spin no latency
#endif
  }
}

std::string lock_memory() {
  if (mlockall(MCL_CURRENT | MCL_FUTURE) == 0) return "";
  const int err = errno;
  rlimit lim{};
  getrlimit(RLIMIT_MEMLOCK, &lim);
  return fmt::format("{} (RLIMIT_MEMLOCK {} bytes; needs CAP_IPC_LOCK or a higher limit)",
                     errno_text("mlockall(MCL_CURRENT|MCL_FUTURE)", err),
                     lim.rlim_cur == RLIM_INFINITY ? std::string("unlimited") : std::to_string(lim.rlim_cur));
}

void unlock_memory() { munlockall(); }

std::string set_fifo(pthread_t thread, int priority) {
  sched_param p{};
  p.sched_priority = priority;
  const int err = pthread_setschedparam(thread, SCHED_FIFO, &p);
  if (err == 0) return "";
  return errno_text(fmt::format("pthread_setschedparam(SCHED_FIFO, {})", priority).c_str(), err) +
         (err == EPERM ? " (needs CAP_SYS_NICE, RLIMIT_RTPRIO, and real-time bandwidth in the cgroup)" : "");
}

std::string pin_cpu(pthread_t thread, int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  const int err = pthread_setaffinity_np(thread, sizeof(set), &set);
  return err == 0 ? "" : errno_text(fmt::format("pthread_setaffinity_np(cpu {})", cpu).c_str(), err);
}

std::string set_thread_nice(int nice) {
  const pid_t tid = pid_t(syscall(SYS_gettid));
  errno = 0;
  const int now = getpriority(PRIO_PROCESS, id_t(tid));
  if (errno != 0 || now >= nice) return "";
  return setpriority(PRIO_PROCESS, id_t(tid), nice) == 0 ? "" : errno_text("setpriority", errno);
}

void tight_timer_slack() { prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL); }

__attribute__((noinline)) void prefault_stack(size_t bytes) {
  // Recurse in 4 KiB frames, touching each page; volatile so the writes stay, and the last write
  // after the call so the recursion is not turned into a loop that reuses one frame.
  constexpr size_t kFrame = 4096;
  [[maybe_unused]] volatile char frame[kFrame];
  for (size_t i = 0; i < kFrame; i += 64) frame[i] = 0;
  if (bytes > kFrame) prefault_stack(bytes - kFrame);
  frame[kFrame - 1] = 1;
}

FaultCount thread_faults() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return {int64_t(u.ru_minflt), int64_t(u.ru_majflt)};
}

double host_steal_ms() {
  std::FILE* f = std::fopen("/proc/stat", "r");
  if (!f) return -1;
  // "cpu  user nice system idle iowait irq softirq steal ...", in USER_HZ ticks over all CPUs.
  unsigned long long v[8] = {};
  const int n = std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                            &v[6], &v[7]);
  std::fclose(f);
  const long hz = sysconf(_SC_CLK_TCK);
  if (n != 8 || hz <= 0) return -1;
  return double(v[7]) * 1000.0 / double(hz);
}

}  // namespace strata::rt
