#include "train/metrics.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace strata {

MetricsWriter::MetricsWriter(const std::string& path, bool append) : path_(path) {
  auto parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  bool torn = false;
  if (append) {
    if (std::FILE* r = std::fopen(path.c_str(), "rb")) {
      if (std::fseek(r, -1, SEEK_END) == 0) torn = std::fgetc(r) != '\n';
      std::fclose(r);
    }
  }
  f_ = std::fopen(path.c_str(), append ? "ab" : "wb");
  if (!f_) throw Error(fmt::format("metrics: cannot open '{}': {}", path, std::strerror(errno)));
  if (torn && (std::fputc('\n', f_) == EOF || std::fflush(f_) != 0)) {
    std::fclose(f_);
    throw Error(fmt::format("metrics: writing '{}' failed: {}", path, std::strerror(errno)));
  }
}

MetricsWriter::~MetricsWriter() {
  if (f_) std::fclose(f_);
}

void MetricsWriter::write(const nlohmann::json& record) {
  // Replace invalid UTF-8 rather than throw mid-training over a label.
  std::string line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line.push_back('\n');
  if (std::fwrite(line.data(), 1, line.size(), f_) != line.size() || std::fflush(f_) != 0)
    throw Error(fmt::format("metrics: writing '{}' failed: {}", path_, std::strerror(errno)));
}

}  // namespace strata
