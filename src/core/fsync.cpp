#include "core/fsync.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

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

void replace_file_atomically(const std::string& path, const std::string& context,
                             const std::function<void(const std::string& tmp)>& write) {
  namespace fs = std::filesystem;
  const std::string tmp = path + ".tmp";
  try {
    write(tmp);
    fsync_path(tmp, false);
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      throw Error(fmt::format("{}: rename from '{}' failed: {}", context, tmp, std::strerror(errno)));
    const fs::path parent = fs::path(path).parent_path();
    fsync_path(parent.empty() ? "." : parent.string(), true);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
}

}  // namespace strata
