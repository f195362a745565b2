#pragma once
// The sweep executors: `local` (K points at a time as child processes, the cores divided among them)
// and `slurm` (an sbatch array script, submitted), and `run-point`, what each of them runs per point:
// `strata train` on the point's overrides in its run directory (resuming a checkpoint if one is
// there), its output in log.txt, its outcome in status.json (train/sweep_dir.h).
#include <string>

#include "train/sweep_spec.h"

namespace strata {

// The strata binary running now (/proc/self/exe), for the children and the sbatch script.
std::string self_exe();

// Creates the sweep directory with its manifest, or reuses one that holds the same sweep (same base
// and points: a rerun continues it, skipping finished points). Returns the absolute path.
std::string prepare_sweep_dir(const SweepSpec& spec, const std::string& dir);

// Runs the points not done yet, `parallel` at a time (OMP_NUM_THREADS = cores / parallel each).
// 0 when every point finished; 1 when any failed; 130 after Ctrl-C (running points checkpoint).
int run_local(const std::string& dir, int parallel, bool dry_run);

// Writes dir/sweep.sbatch (an array over the points not done yet) and submits it with sbatch.
int submit_slurm(const SweepSpec& spec, const std::string& dir, int parallel, bool dry_run, bool wait);

// One point: `strata train` as a child process. Its exit code (0 for a point already done, or
// interrupted with a checkpoint saved).
int run_point(const std::string& dir, long index);

}  // namespace strata
