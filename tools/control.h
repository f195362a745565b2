#pragma once
// `strata control bench CKPT`: a trained robot policy (load/robot_runtime.h) run by the real-time
// executor (infer/realtime/executor.h) on a recorded observation stream. Lives with the CLI
// because it needs both train/ (the checkpoint, the episodes) and infer/ (the executor).
#include <string>

namespace CLI {
class App;
}

namespace strata {

struct ControlBenchOptions {
  std::string checkpoint;
  std::string episodes;      // "": the episodes file named by the checkpoint's robot.data.path
  double seconds = 60;
  std::string handoff;       // "": the checkpoint's robot.handoff
  double planner_hz = 0;     // 0: the checkpoint's
  double control_hz = 0;     // 0: the checkpoint's
  std::string out = "control_bench";
  int threads = 1;           // OpenMP threads (the planner's forward)
  bool single_rate = false;  // planner + controller in-line at every control tick
  bool no_fifo = false, no_mlock = false;
  double spin_us = 0;
};

// Adds `control` (with its `bench` subcommand) to app; returns the `bench` subcommand, which is
// set when it was given.
CLI::App* add_control_command(CLI::App& app, ControlBenchOptions& o);
// Runs it: 0 on success; bad input throws strata::InputError (the CLI's exit 2).
int run_control_bench(const ControlBenchOptions& o);

}  // namespace strata
