#pragma once
// One trainer per run directory: an advisory lock (flock) on <run_dir>/.lock, held for the whole
// run. A second trainer on the same directory would prune the first one's checkpoints and delete its
// in-flight .tmp files; it is refused up front instead, with the holder's pid (written into the
// lock file). The kernel drops the lock when the holder exits, however it exits (kill -9 included),
// so a stale lock file never blocks a later run.
#include <string>

namespace strata {

class RunDirLock {
 public:
  // Throws InputError naming run_dir (and the holder's pid when it can be read) when another process
  // holds the lock. On a file system without flock support the run goes on unlocked.
  explicit RunDirLock(const std::string& run_dir);
  ~RunDirLock();
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace strata
