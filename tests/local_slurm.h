#pragma once
// A one-node Slurm cluster for one test binary: scripts/slurm_local.sh with a state directory of its
// own (per process) and the given ports, so that a developer's `slurm_local.sh up` (the defaults)
// and other test binaries running at the same time are left alone. Stopped and removed at the end.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "cli.h"
#include "python_oracle.h"

namespace strata::testing {

struct LocalSlurm {
  std::string dir;
  std::string env;  // prefix for command lines: this cluster's SLURM_CONF (and the script's settings)
  std::string script = source_dir() + "/scripts/slurm_local.sh";
  int up_code = -1;  // the script's exit code: 0 up, 3 Slurm cannot be started here (the output says why)
  std::string up_out;
  // port: slurmctld's port; slurmd uses port + 1.
  explicit LocalSlurm(int port) {
    dir = "/tmp/strata-slurm-test-" + std::to_string(port) + "-" + std::to_string(getpid());
    env = "STRATA_SLURM_DIR=" + dir + " STRATA_SLURM_PORT=" + std::to_string(port) + " SLURM_CONF=" + dir + "/slurm.conf ";
    RunResult r = run_raw(env + "bash '" + script + "' up", "/");
    up_code = r.code;
    up_out = r.out;
  }
  ~LocalSlurm() {
    run_raw(env + "bash '" + script + "' down", "/");
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  LocalSlurm(const LocalSlurm&) = delete;
  LocalSlurm& operator=(const LocalSlurm&) = delete;
  // A strata command line with this cluster's SLURM_CONF.
  RunResult strata(const std::string& args, const std::string& cwd) const { return run_raw(env + "'" + strata_bin() + "' " + args, cwd); }
  RunResult shell(const std::string& cmd, const std::string& cwd) const { return run_raw(env + cmd, cwd); }
};

// Polls `done` every 200 ms for up to `seconds` (a hang guard, not a timing check).
template <class F> bool wait_for(F&& done, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return done();
}

}  // namespace strata::testing
