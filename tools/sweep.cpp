#include "sweep.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "sweep_exec.h"
#include "train/sweep_dir.h"
#include "train/sweep_results.h"
#include "train/sweep_spec.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace strata {

namespace {

CLI::App* g_status = nullptr;
CLI::App* g_results = nullptr;
CLI::App* g_run_point = nullptr;

int launch(const SweepSpec& spec, const std::string& dir_arg, const std::string& executor, int parallel, bool dry_run, bool wait) {
  check_sweep(spec);  // every point through train's parser before anything is written or run
  const std::string dir = prepare_sweep_dir(spec, dir_arg);
  if (parallel < 0) parallel = executor == "slurm" ? 0 : 1;  // unset: one at a time here, Slurm's scheduler decides there
  if (executor == "slurm") return submit_slurm(spec, dir, parallel, dry_run, wait);
  return run_local(dir, parallel, dry_run);
}

// Slurm's view of a sweep's array tasks still in its queue: task index -> "13_2 PENDING (Priority)".
// Empty when there are no jobs, or squeue is not there / fails (a status without it is still right).
std::map<size_t, std::string> slurm_queue(const json& m) {
  std::map<size_t, std::string> out;
  if (!m.contains("slurm_jobs") || m["slurm_jobs"].empty()) return out;
  std::string jobs;
  for (auto& j : m["slurm_jobs"]) jobs += (jobs.empty() ? "" : ",") + j.get<std::string>();
  std::FILE* p = popen(fmt::format("squeue -h -r -j {} -o '%K|%i|%T|%R' 2>/dev/null", jobs).c_str(), "r");
  if (!p) return out;
  char line[512];
  while (std::fgets(line, sizeof(line), p)) {
    std::string l(line);
    while (!l.empty() && (l.back() == '\n' || l.back() == ' ')) l.pop_back();
    size_t a = l.find('|'), b = l.find('|', a + 1), c = l.find('|', b + 1);
    if (c == std::string::npos) continue;
    char* end = nullptr;
    unsigned long idx = std::strtoul(l.c_str(), &end, 10);
    if (end != l.c_str() + a) continue;
    std::string reason = l.substr(c + 1);
    out[size_t(idx)] = fmt::format("slurm {} {}{}", l.substr(a + 1, b - a - 1), l.substr(b + 1, c - b - 1),
                                   reason.empty() || reason == "None" || reason == "(None)" ? "" : " " + reason);
  }
  pclose(p);
  return out;
}

int status(const std::string& dir) {
  const json m = read_manifest(dir);
  std::vector<PointStatus> st = refresh_states(dir);
  const std::map<size_t, std::string> queue = slurm_queue(m);
  std::map<std::string, int> count;
  for (auto& s : st) ++count[s.state];
  std::string summary;
  for (const char* k : {"done", "running", "interrupted", "pending", "failed"})
    if (count[k]) summary += fmt::format("{}{} {}", summary.empty() ? "" : ", ", count[k], k);
  std::printf("sweep %s: %zu points in %s: %s\n", m.value("name", "").c_str(), st.size(), dir.c_str(), summary.c_str());
  if (m.contains("slurm_jobs")) std::printf("slurm jobs: %s\n", m["slurm_jobs"].dump().c_str());
  std::printf("%-6s %-12s %-8s %-9s %s\n", "point", "state", "attempts", "wall s", "values");
  for (size_t i = 0; i < st.size(); ++i) {
    const PointStatus& s = st[i];
    std::string where = s.state == "running" ? fmt::format(" [{} pid {}]", s.host, s.pid) : "";
    if (auto q = queue.find(i); q != queue.end()) where += " [" + q->second + "]";
    std::printf("%03zu    %-12s %-8d %-9s %s%s\n", i, s.state.c_str(), s.attempts,
                s.wall_s > 0 ? fmt::format("{:.1f}", s.wall_s).c_str() : "", point_values_text(m, i).c_str(), where.c_str());
    if (s.state == "failed" || s.state == "interrupted") {
      std::string why = s.reason;
      for (size_t p = 0; (p = why.find('\n', p)) != std::string::npos; p += 2) why.replace(p, 1, "\n       | ");
      std::printf("       why: %s\n", why.c_str());
    }
  }
  return 0;
}

int results(const std::string& dir, const SweepCommandOptions& o) {
  SweepResults r = collect_results(dir);
  const std::string md = results_markdown(r);
  std::fputs(md.c_str(), stdout);
  const std::string csv = o.csv.empty() ? (fs::path(dir) / "results.csv").string() : o.csv;
  { std::ofstream(csv) << results_csv(r); }
  { std::ofstream(fs::path(dir) / "results.md") << md; }
  std::fprintf(stderr, "wrote %s and %s\n", csv.c_str(), (fs::path(dir) / "results.md").c_str());
  if (!o.no_plots) {
    const std::string pd = o.plots_dir.empty() ? dir : o.plots_dir;
    fs::create_directories(pd);
    for (const std::string& p : write_result_plots(r, pd)) std::fprintf(stderr, "wrote %s\n", p.c_str());
  }
  return 0;
}

}  // namespace

CLI::App* add_sweep_command(CLI::App& app, SweepCommandOptions& o) {
  auto* sw = app.add_subcommand("sweep", "Run a sweep (grid / random / listed points) locally or as a Slurm array; see docs/sweeps.md");
  sw->add_option("sweep_file", o.sweep_file, "sweep YAML (base config, overrides, grid / random / points, executor)");
  sw->add_option("--dir", o.dir, "sweep directory (default: the file's dir:, or runs/sweeps/<name>)");
  sw->add_option("--executor", o.executor, "local | slurm (default: the file's executor:)")->check(CLI::IsMember({"local", "slurm"}));
  sw->add_option("--parallel", o.parallel, "points at a time (local) / the array's %K throttle (slurm); 0 = no limit; default: the file's parallel:, else 1 locally, no limit on Slurm")
      ->check(CLI::Range(0, 100000));
  sw->add_flag("--dry-run", o.dry_run, "print the commands (local) or the sbatch script (slurm) without running anything");
  sw->add_flag("--wait", o.wait, "slurm: return when the array has finished (sbatch --wait)");
  g_status = sw->add_subcommand("status", "Which points are pending, running, done or failed (and why)");
  g_status->add_option("dir", o.target_dir, "sweep directory")->required();
  g_results = sw->add_subcommand("results", "Table (markdown on stdout, CSV file) and PNG plots of a sweep's runs");
  g_results->add_option("dir", o.target_dir, "sweep directory")->required();
  g_results->add_option("--csv", o.csv, "CSV file to write (default DIR/results.csv)");
  g_results->add_option("--plots-dir", o.plots_dir, "where the PNG plots go (default DIR)");
  g_results->add_flag("--no-plots", o.no_plots, "table and CSV only");
  g_run_point = sw->add_subcommand("run-point", "Run one point of a sweep (what each executor runs; resumes a checkpoint)");
  g_run_point->add_option("dir", o.target_dir, "sweep directory")->required();
  g_run_point->add_option("--index", o.index, "point index (a Slurm array task's $SLURM_ARRAY_TASK_ID)")->required();
  return sw;
}

int run_sweep_command(CLI::App* /*sweep*/, const SweepCommandOptions& o) {
  if (*g_status) return status(o.target_dir);
  if (*g_results) return results(o.target_dir, o);
  if (*g_run_point) return run_point(o.target_dir, o.index);
  if (o.sweep_file.empty()) throw InputError("sweep: give a sweep file (strata sweep SWEEP.yaml), or status / results / run-point DIR");
  SweepSpec spec = load_sweep(o.sweep_file);
  const std::string executor = o.executor.empty() ? spec.executor : o.executor;
  const int parallel = o.parallel >= 0 ? o.parallel : spec.parallel;
  return launch(spec, o.dir, executor, parallel, o.dry_run, o.wait);
}

void add_multirun_options(CLI::App* train, MultirunOptions& o) {
  train->add_flag("-m,--multirun", o.multirun, "Hydra multirun: overrides with comma lists (a=1,2 b=x,y) are swept as a grid");
  train->add_option("--sweep-dir", o.dir, "multirun: the sweep directory (default runs/multirun/<config stem>)");
  train->add_option("--executor", o.executor, "multirun: local | slurm")->check(CLI::IsMember({"local", "slurm"}))->capture_default_str();
  train->add_option("--parallel", o.parallel, "multirun: points at a time (0 = no limit; default 1 locally, no limit on Slurm)")
      ->check(CLI::Range(0, 100000));
  train->add_flag("--dry-run", o.dry_run, "multirun: print the commands / sbatch script without running");
}

int run_multirun(const std::string& config, const std::vector<std::string>& overrides, const MultirunOptions& o) {
  if (config.empty()) throw InputError("train -m: a config file is required (strata train CFG -m optim.lr=1e-3,3e-3)");
  SweepSpec spec = multirun_sweep(config, overrides);
  spec.executor = o.executor;
  return launch(spec, o.dir, o.executor, o.parallel, o.dry_run, false);
}

}  // namespace strata
