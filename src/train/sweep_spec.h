#pragma once
// A sweep: a base config, fixed overrides, and the points to train, each a set of overrides of the
// swept keys. Read from a sweep file (docs/sweeps.md) or built from Hydra's multirun form
// (`strata train CFG -m optim.lr=1e-3,3e-3 model.pattern=M*,MM*`). Points come from
//   grid:   key: [v1, v2, ...]          the cartesian product, first key slowest
//   random: {samples: N, seed: S, params: {key: {choice: [...]} | {uniform: [lo, hi]} |
//            {log_uniform: [lo, hi]} | {int_uniform: [lo, hi]}}}   N seeded draws
//   points: [{key: v, ...}, ...]         explicit points
// (each optional; the points are grid, then random, then the listed ones). Every point's overrides
// go through the same parser and checks as `strata train` (config_load.h) before anything runs; an
// error names the sweep file and line of the offending key or value, and the valid keys.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace strata {

struct SweepValue {
  std::string key, value;  // override "key=value"
  std::string where;       // "sweep.yaml:14" (or "command-line override '...'")
};

struct SweepPoint {
  std::vector<SweepValue> values;  // in swept-key order
  std::string source;              // grid | random | points
};

// Where the points run (docs/sweeps.md "Executors").
struct SlurmResources {
  std::string partition, time = "01:00:00", mem, account, qos, gres;
  int cpus_per_task = 0;                // 0: the local executor's threads per run
  std::vector<std::string> extra;       // more "#SBATCH ..." option lines, as written (e.g. "--constraint=avx2")
  std::string setup;                    // shell lines run before each point (module load ...)
};

struct SweepSpec {
  std::string name;                    // the sweep file's stem, or the config's for multirun
  std::string source;                  // the sweep file ("" for multirun)
  std::string base;                    // the base config path (as the cwd sees it)
  std::vector<SweepValue> overrides;   // fixed overrides, for every point
  std::vector<std::string> keys;       // the swept keys, in order of first appearance
  std::vector<SweepPoint> points;
  std::string executor = "local";      // local | slurm
  int parallel = -1;                   // K: points at a time (local) / the array's %K throttle (slurm); 0 = no limit;
                                       // -1 (unset) = 1 locally, no limit on Slurm
  std::string dir;                     // the sweep directory ("" -> runs/sweeps/<name>)
  SlurmResources slurm;
};

// Reads and expands a sweep file; the base config path is relative to the sweep file's directory
// (or absolute). Throws InputError naming file:line for every problem, but does not validate the
// points against the config schema: see check_sweep.
SweepSpec load_sweep(const std::string& path);
SweepSpec parse_sweep(const std::string& yaml_text, const std::string& source_name, const std::string& base_dir);

// Hydra's multirun: each override whose value has commas (a=1,2,3) is a swept key (a grid over
// its values); the others are fixed. Without any comma list it is one point.
SweepSpec multirun_sweep(const std::string& config_path, const std::vector<std::string>& overrides);

// Loads the base config with the fixed overrides, then with each point's, through config_load's
// parser: the first failure is an InputError that names the sweep file and line of the key or value
// (and, from the parser, the valid keys or values). Returns nothing; throws on the first bad point.
void check_sweep(const SweepSpec& spec);

// "key=value" overrides of point i: the fixed ones, then the point's.
std::vector<std::string> point_overrides(const SweepSpec& spec, size_t i);

// A number written as the shortest text that reads back as the same double ("0.001", "3e-05").
std::string shortest_number(double v);

}  // namespace strata
