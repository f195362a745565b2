#pragma once
// Pieces of the training loop that the language trainer (train/trainer.cpp) and the robot trainer
// (train/robot_trainer.cpp) share: SIGINT/SIGTERM/SIGUSR1 turned into "save and stop", and the parameter /
// optimizer arrays to and from checkpoints, matched by name and shape.
#include <string>
#include <vector>

#include "core/params.h"
#include "train/checkpoint.h"

namespace strata {

// While alive, SIGINT, SIGTERM and SIGUSR1 (Slurm's --signal=USR1@90 before the time limit) only
// set a flag (pending_signal() != 0); the previous handlers come back on destruction.
//
// The signals never interrupt a computing thread: the calling thread and the OpenMP threads block
// them, and a watcher thread takes them (sigtimedwait). oneDNN's JIT GEMM kernels (Debian's 2.x;
// fixed upstream in oneDNN PR #4855, issue #4845) point rsp into the heap while they run, so a signal
// delivered to such a thread writes its frame into the heap: `strata train` stopped by Ctrl-C or
// SIGTERM aborted with "corrupted size vs. prev_size" in about half the tries.
class SignalGuard {
 public:
  SignalGuard();
  ~SignalGuard();
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;

 private:
  struct Saved;
  Saved* old_;
};
int pending_signal();

// Copies of each parameter's slice of `flat` (a buffer laid out as ps), for a checkpoint.
std::vector<NamedArray> views_of(const ParamStore& ps, const float* flat);
// Copies named arrays into `flat`, refusing any mismatch with the model by name and shape
// (InputError naming the checkpoint and the tensor).
void restore_into(const ParamStore& ps, float* flat, const std::vector<NamedArray>& arrays, const std::string& what,
                  const std::string& path);

}  // namespace strata
