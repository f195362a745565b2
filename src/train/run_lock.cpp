#include "train/run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "core/error.h"

namespace strata {

RunDirLock::RunDirLock(const std::string& run_dir) {
  const std::string path = (std::filesystem::path(run_dir) / ".lock").string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw InputError(fmt::format("run directory '{}': cannot open its lock file '{}': {}", run_dir, path, std::strerror(errno)));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err == EWOULDBLOCK || err == EINTR) {
      char buf[32] = {};
      ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
      std::string pid = n > 0 ? std::string(buf, size_t(n)) : "";
      while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
      ::close(fd_);
      fd_ = -1;
      throw InputError(fmt::format("run directory '{}' is in use by another trainer{} (it holds '{}'); wait for it to "
                                   "finish or stop it, or set train.run_dir to another directory",
                                   run_dir, pid.empty() ? "" : " (pid " + pid + ")", path));
    }
    // ENOLCK / EOPNOTSUPP: some network file systems have no flock; training there stays possible.
    ::close(fd_);
    fd_ = -1;
    return;
  }
  const std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, me.data(), me.size(), 0) < 0) {
    // The pid is only for the message of a refused second trainer; the lock holds without it.
  }
}

RunDirLock::~RunDirLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

}  // namespace strata
