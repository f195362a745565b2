#pragma once
// The real-time habits of a control loop, each a small call that reports instead of failing:
// absolute-deadline sleeping on CLOCK_MONOTONIC, locking memory, SCHED_FIFO, CPU pinning, a
// prefaulted stack, and the thread's page-fault counters. Where the system refuses (EPERM in a
// container without CAP_SYS_NICE / CAP_IPC_LOCK, or no real-time bandwidth), the call returns the
// reason so the executor can print one warning line and run anyway.
#include <pthread.h>

#include <cstdint>
#include <string>

namespace strata::rt {

int64_t mono_ns();                    // CLOCK_MONOTONIC in ns
void sleep_until_ns(int64_t mono);    // clock_nanosleep(TIMER_ABSTIME), resumed after signals
// Sleeps until mono - spin_ns, then spins on the clock until mono (spin_ns 0: sleep_until_ns).
void wait_until_ns(int64_t mono, int64_t spin_ns);

// mlockall(MCL_CURRENT | MCL_FUTURE): "" on success, else why not. unlock_memory undoes it.
std::string lock_memory();
void unlock_memory();

// SCHED_FIFO at `priority` (1..99) for a thread: "" on success, else why not.
std::string set_fifo(pthread_t thread, int priority);
// Pin a thread to one CPU: "" on success, else why not.
std::string pin_cpu(pthread_t thread, int cpu);
// Raise (only raise) the calling thread's nice value: a background planner yields to the controller
// even where SCHED_FIFO is refused.
std::string set_thread_nice(int nice);

// The calling thread's timer slack to 1 ns (PR_SET_TIMERSLACK): a SCHED_OTHER thread's sleeps
// otherwise end up to 50 us late by design (SCHED_FIFO threads have no slack).
void tight_timer_slack();

// Touch `bytes` of the calling thread's stack so its pages are mapped (and locked, after mlockall)
// before the loop starts instead of faulting inside it.
void prefault_stack(size_t bytes = 256 * 1024);

struct FaultCount {
  int64_t minor = 0, major = 0;
};
FaultCount thread_faults();  // getrusage(RUSAGE_THREAD): the calling thread's page faults so far

// CPU time the hypervisor gave to other guests while this machine's vCPUs wanted to run (the
// "steal" column of /proc/stat, summed over CPUs), in ms; -1 where it cannot be read. A loop's
// late wake-ups that coincide with steal are the host's, not the program's.
double host_steal_ms();

}  // namespace strata::rt
