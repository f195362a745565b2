#include "train/sweep_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fsync.h"
#include "train/tensorboard.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace strata {

namespace {

std::string hostname() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || !host[0]) return "localhost";
  return host;
}

void write_json_atomically(const std::string& path, const json& j, const std::string& what) {
  replace_file_atomically(path, what, [&](const std::string& tmp) {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << j.dump(2) << "\n";
    if (!f.flush()) throw Error(fmt::format("{}: cannot write '{}'", what, tmp));
  });
}

// An exclusive flock on dir/manifest.lock while alive: the manifest's read-modify-write cycles.
class ManifestLock {
 public:
  explicit ManifestLock(const std::string& dir) {
    const std::string p = (fs::path(dir) / "manifest.lock").string();
    fd_ = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error(fmt::format("sweep: cannot open '{}': {}", p, std::strerror(errno)));
    while (flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
    }
  }
  ~ManifestLock() { ::close(fd_); }
  ManifestLock(const ManifestLock&) = delete;
  ManifestLock& operator=(const ManifestLock&) = delete;

 private:
  int fd_ = -1;
};

json status_json(const PointStatus& s) {
  return {{"state", s.state}, {"exit_code", s.exit_code}, {"signal", s.signal}, {"host", s.host},
          {"pid", s.pid},     {"started", s.started},     {"ended", s.ended},   {"train_s", s.train_s},
          {"wall_s", s.wall_s}, {"attempts", s.attempts}, {"reason", s.reason}};
}

}  // namespace

json sweep_manifest(const SweepSpec& spec, const std::string& dir, const std::string& cwd) {
  json points = json::array();
  for (size_t i = 0; i < spec.points.size(); ++i) {
    json values = json::object();
    for (const SweepValue& v : spec.points[i].values) values[v.key] = v.value;
    points.push_back({{"index", i},
                      {"dir", fs::path(point_dir(dir, i)).filename().string()},
                      {"source", spec.points[i].source},
                      {"values", values},
                      {"overrides", point_overrides(spec, i)},
                      {"state", "pending"}});
  }
  json fixed = json::array();
  for (size_t k = 0; k < spec.overrides.size(); ++k) fixed.push_back(point_overrides(spec, 0)[k]);
  return {{"version", 1},
          {"name", spec.name},
          {"sweep_file", spec.source.empty() ? "" : fs::absolute(spec.source).string()},
          {"base", spec.base},
          {"cwd", cwd},
          {"dir", dir},
          {"created", unix_time_now()},
          {"keys", spec.keys},
          {"fixed_overrides", fixed},
          {"executor", spec.executor},
          {"parallel", spec.parallel},
          {"points", points}};
}

void write_manifest(const std::string& dir, const json& manifest) {
  write_json_atomically((fs::path(dir) / "manifest.json").string(), manifest, "sweep manifest");
}

json read_manifest(const std::string& dir) {
  const fs::path p = fs::path(dir) / "manifest.json";
  std::ifstream f(p);
  if (!f) throw InputError(fmt::format("'{}' is not a sweep directory (no manifest.json; `strata sweep SWEEP.yaml` makes one)", dir));
  try {
    json j = json::parse(f);
    if (!j.contains("points") || !j["points"].is_array()) throw InputError(fmt::format("'{}' has no points", p.string()));
    return j;
  } catch (const json::exception& e) {
    throw InputError(fmt::format("'{}' is not valid JSON: {}", p.string(), e.what()));
  }
}

void update_manifest(const std::string& dir, const std::function<void(json&)>& change) {
  ManifestLock lock(dir);
  json m = read_manifest(dir);
  change(m);
  write_manifest(dir, m);
}

std::string point_dir(const std::string& dir, size_t index) { return (fs::path(dir) / fmt::format("{:03d}", index)).string(); }

std::string point_values_text(const json& m, size_t index) {
  const json& values = m["points"].at(index)["values"];
  std::string out;
  for (auto& k : m["keys"])
    if (values.contains(k.get<std::string>()))
      out += (out.empty() ? "" : " ") + k.get<std::string>() + "=" + values[k.get<std::string>()].get<std::string>();
  return out;
}

PointStatus read_point_status(const std::string& dir, size_t index) {
  PointStatus s;
  std::ifstream f(fs::path(point_dir(dir, index)) / "status.json");
  if (!f) return s;
  try {
    json j = json::parse(f);
    s.state = j.value("state", "pending");
    s.exit_code = j.value("exit_code", -1);
    s.signal = j.value("signal", 0);
    s.host = j.value("host", "");
    s.pid = j.value("pid", int64_t(0));
    s.started = j.value("started", 0.0);
    s.ended = j.value("ended", 0.0);
    s.train_s = j.value("train_s", 0.0);
    s.wall_s = j.value("wall_s", 0.0);
    s.attempts = j.value("attempts", 0);
    s.reason = j.value("reason", "");
  } catch (const json::exception& e) {
    s.state = "failed";
    s.reason = fmt::format("status.json is unreadable: {}", e.what());
  }
  return s;
}

void write_point_status(const std::string& dir, size_t index, const PointStatus& s) {
  const std::string d = point_dir(dir, index);
  fs::create_directories(d);
  write_json_atomically((fs::path(d) / "status.json").string(), status_json(s), "sweep point status");
}

std::string log_tail(const std::string& path, int n) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return "";
  std::deque<std::string> last;
  for (std::string line; std::getline(f, line);) {
    // A progress bar redraws with '\r': only what was drawn last on the line counts.
    if (size_t cr = line.find_last_of('\r'); cr != std::string::npos) line = line.substr(cr + 1);
    // Strip ANSI escapes ("\033[K") the bar writes.
    for (size_t e; (e = line.find('\033')) != std::string::npos;) {
      size_t end = line.find_first_of("ABCDEFGHJKSTfmnsu", e + 1);
      line.erase(e, end == std::string::npos ? std::string::npos : end - e + 1);
    }
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    last.push_back(line);
    if (int(last.size()) > n) last.pop_front();
  }
  std::string out;
  for (auto& l : last) out += (out.empty() ? "" : "\n") + l;
  return out;
}

std::vector<PointStatus> refresh_states(const std::string& dir) {
  ManifestLock lock(dir);
  json m = read_manifest(dir);
  std::vector<PointStatus> out;
  const std::string host = hostname();
  bool changed = false;
  for (size_t i = 0; i < m["points"].size(); ++i) {
    PointStatus s = read_point_status(dir, i);
    // A point killed with its runner (SIGKILL, a node crash) stays "running" in its file; on this
    // host we can see that its process is gone.
    if (s.state == "running" && s.host == host && s.pid > 0 && ::kill(pid_t(s.pid), 0) != 0 && errno == ESRCH) {
      s.state = "failed";
      s.reason = fmt::format("its process ({} on {}) is gone without recording an end (killed?); log:\n{}", s.pid, s.host,
                             log_tail((fs::path(point_dir(dir, i)) / "log.txt").string(), 5));
    }
    if (m["points"][i].value("state", "") != s.state) {
      m["points"][i]["state"] = s.state;
      changed = true;
    }
    out.push_back(s);
  }
  if (changed) write_manifest(dir, m);
  return out;
}

}  // namespace strata
