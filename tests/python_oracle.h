#pragma once
// Runs Python oracles (tensorboard, h5py) from the test venv that scripts/python_env.sh builds.
// Tests GTEST_SKIP with the reason when no venv can be had, so a skip is always visible; under CI
// (CI=true) a missing venv is an error instead: CI must not pass by skipping its oracles.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace strata::testing {

inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs `cmd` through the shell; returns its exit status and stdout (stderr too if merge_stderr).
inline int run_command(const std::string& cmd, std::string* out, bool merge_stderr = false) {
  std::string full = cmd + (merge_stderr ? " 2>&1" : "");
  std::FILE* p = popen(full.c_str(), "r");
  if (!p) return -1;
  std::array<char, 4096> buf;
  size_t n;
  out->clear();
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out->append(buf.data(), n);
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

inline std::string source_dir() {
  const char* s = std::getenv("STRATA_SOURCE_DIR");
  return s && *s ? s : std::filesystem::current_path().string();
}

// The venv's python, or "" with *why set.
inline std::string test_python(std::string* why) {
  static std::string cached, cached_why;
  static bool done = false;
  if (!done) {
    done = true;
    std::string src = source_dir(), out;
    int rc = run_command(shell_quote(src + "/scripts/python_env.sh") + " " + shell_quote(src + "/python/requirements-test.txt"),
                         &out, true);
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    std::string venv = out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
    if (rc != 0) {
      cached_why = "scripts/python_env.sh failed (rc " + std::to_string(rc) + "): " + out.substr(out.size() > 600 ? out.size() - 600 : 0);
    } else if (!std::filesystem::exists(venv + "/bin/python")) {
      cached_why = "scripts/python_env.sh printed '" + venv + "', which has no bin/python";
    } else {
      cached = venv + "/bin/python";
    }
    const char* ci = std::getenv("CI");
    if (cached.empty() && ci && std::string(ci) == "true") {
      std::fprintf(stderr, "CI=true and the Python oracle venv is unavailable: %s\n", cached_why.c_str());
      std::exit(1);
    }
  }
  *why = cached_why;
  return cached;
}

}  // namespace strata::testing
