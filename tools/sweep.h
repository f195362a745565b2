#pragma once
// `strata sweep SWEEP.yaml | status DIR | results DIR | run-point DIR --index I` and the multirun
// form of train (`strata train CFG -m a=1,2 b=x,y`): the sweep spec, directory and results live in
// src/train/sweep_*; this is the command line and the executors (processes, sbatch).
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace strata {

struct SweepCommandOptions {
  std::string sweep_file, dir;
  std::string executor;       // "": the sweep file's
  int parallel = -1;          // -1: the sweep file's
  bool dry_run = false;
  bool wait = false;          // slurm: sbatch --wait (return when the array has finished)
  // status / results / run-point
  std::string target_dir;
  std::string csv, plots_dir;
  bool no_plots = false;
  long index = -1;
};

struct MultirunOptions {
  bool multirun = false;
  std::string dir, executor = "local";
  int parallel = -1;  // unset
  bool dry_run = false;
};

// Adds `sweep` and its subcommands; returns the `sweep` command.
CLI::App* add_sweep_command(CLI::App& app, SweepCommandOptions& o);
// Runs whichever of them was given; the exit code (bad input throws strata::InputError).
int run_sweep_command(CLI::App* sweep, const SweepCommandOptions& o);

// Adds -m/--multirun and its options to `train`.
void add_multirun_options(CLI::App* train, MultirunOptions& o);
int run_multirun(const std::string& config, const std::vector<std::string>& overrides, const MultirunOptions& o);

}  // namespace strata
