#pragma once
// The sweep directory: manifest.json (the points and their overrides, the base config, the working
// directory, each point's last known state) and one run directory per point (000, 001, ...) that
// `strata train` trains into, with the point's log.txt and status.json next to its checkpoints.
//   status.json is written only by the process that runs the point (atomically), so points running
//   at once on different nodes never write the same file; the manifest's "state" fields are a copy
//   refreshed (under a lock) by whoever reads the sweep: the executor, `sweep status`, `sweep results`.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/sweep_spec.h"

namespace strata {

struct PointStatus {
  std::string state = "pending";  // pending | running | done | failed | interrupted (checkpointed; resumes)
  int exit_code = -1;             // of `strata train`; -1 while running or when killed by a signal
  int signal = 0;                 // the signal that killed it, if one did
  std::string host;
  int64_t pid = 0;                // the process running the point (on host)
  double started = 0, ended = 0;  // unix seconds
  double train_s = 0;             // wall time of the train process (this attempt)
  double wall_s = 0;              // total over attempts
  int attempts = 0;
  std::string reason;             // failed: what happened and the log's last lines
};

// The manifest of a new sweep directory. `dir` and `cwd` are absolute; the points' run directories
// are dir/NNN.
nlohmann::json sweep_manifest(const SweepSpec& spec, const std::string& dir, const std::string& cwd);

// manifest.json, replaced atomically. read_manifest throws InputError when `dir` is not a sweep directory.
void write_manifest(const std::string& dir, const nlohmann::json& manifest);
nlohmann::json read_manifest(const std::string& dir);
// Read, change and write back the manifest under its lock (dir/manifest.lock).
void update_manifest(const std::string& dir, const std::function<void(nlohmann::json&)>& change);

std::string point_dir(const std::string& dir, size_t index);  // dir/007
// "optim.lr=1e-3 model.pattern=M*": point `index`'s swept values in the manifest's key order.
std::string point_values_text(const nlohmann::json& manifest, size_t index);
PointStatus read_point_status(const std::string& dir, size_t index);  // "pending" when there is no status.json
void write_point_status(const std::string& dir, size_t index, const PointStatus& s);

// The last `n` non-empty lines of a text file (progress-bar redraws collapsed), "" if unreadable.
std::string log_tail(const std::string& path, int n);

// Reads every point's status.json; a point "running" on this host whose process is gone is reported
// failed ("the process ... is gone"). Copies the states into the manifest (under a lock) and
// returns the statuses, in point order.
std::vector<PointStatus> refresh_states(const std::string& dir);

}  // namespace strata
