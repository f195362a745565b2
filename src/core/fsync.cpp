#include "core/fsync.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "core/error.h"

namespace strata {

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (fd < 0) throw Error(fmt::format("fsync: cannot open '{}': {}", path, std::strerror(errno)));
  int r = ::fsync(fd), err = errno;
  ::close(fd);
  if (r != 0 && !(directory && err == EINVAL)) throw Error(fmt::format("fsync '{}' failed: {}", path, std::strerror(err)));
}

}  // namespace strata
