#include "sweep_exec.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "train/checkpoint.h"
#include "train/sweep_dir.h"
#include "train/tensorboard.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace strata {

namespace {

volatile sig_atomic_t g_signal = 0;  // the last SIGINT/SIGTERM/SIGUSR1/SIGHUP received
volatile pid_t g_child = 0;          // run_point's train process, to forward signals to

// Forwards any stop signal to the train child as SIGTERM (strata train's "checkpoint and exit").
void forward_signal(int sig) {
  g_signal = sig;
  if (g_child > 0) ::kill(g_child, SIGTERM);
}

void on_signals(void (*handler)(int)) {
  struct sigaction sa{};
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  for (int s : {SIGINT, SIGTERM, SIGUSR1, SIGHUP}) sigaction(s, &sa, nullptr);
}

// fork + execv. `out_fd` >= 0 becomes the child's stdout and stderr.
pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::pair<std::string, std::string>>& env, int out_fd) {
  std::vector<char*> a;
  for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) throw Error(fmt::format("sweep: fork failed: {}", std::strerror(errno)));
  if (pid == 0) {
    struct sigaction sa{};
    sa.sa_handler = SIG_DFL;
    for (int s : {SIGINT, SIGTERM, SIGUSR1, SIGHUP}) sigaction(s, &sa, nullptr);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    if (out_fd >= 0) dup2(out_fd, STDOUT_FILENO), dup2(out_fd, STDERR_FILENO);
    execv(a[0], a.data());
    std::fprintf(stderr, "sweep: cannot run '%s': %s\n", a[0], std::strerror(errno));
    _exit(127);
  }
  return pid;
}

int wait_child(pid_t pid, int* status) {
  for (;;) {
    pid_t r = waitpid(pid, status, 0);
    if (r >= 0 || errno != EINTR) return int(r);
  }
}

std::string hostname() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || !host[0]) return "localhost";
  return host;
}

int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=+:,@%") == std::string::npos)
    return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string join_keys(const json& keys) {
  std::string out;
  for (auto& k : keys) {
    std::string key = k.get<std::string>();
    key = key.substr(std::min(key.size(), key.find_first_not_of("+~")));
    out += (out.empty() ? "" : ",") + key;
  }
  return out;
}

// The point's `strata train` command line.
std::vector<std::string> train_argv(const json& m, const std::string& dir, size_t i, bool resume) {
  std::vector<std::string> a = {self_exe(), "train", m["base"].get<std::string>()};
  for (auto& o : m["points"][i]["overrides"]) a.push_back(o.get<std::string>());
  a.push_back("train.run_dir=" + point_dir(dir, i));
  if (!m["keys"].empty()) a.insert(a.end(), {"--hparams", join_keys(m["keys"])});
  a.insert(a.end(), {"--hparams-group", m.value("name", "sweep")});
  if (resume) a.push_back("--resume");
  return a;
}

// "0-3,5,7-9" from sorted indices.
std::string index_ranges(const std::vector<size_t>& idx) {
  std::string out;
  for (size_t a = 0; a < idx.size();) {
    size_t b = a;
    while (b + 1 < idx.size() && idx[b + 1] == idx[b] + 1) ++b;
    out += (out.empty() ? "" : ",") + (a == b ? std::to_string(idx[a]) : fmt::format("{}-{}", idx[a], idx[b]));
    a = b + 1;
  }
  return out;
}

std::vector<size_t> not_done(const std::string& dir) {
  std::vector<PointStatus> st = refresh_states(dir);
  std::vector<size_t> out;
  for (size_t i = 0; i < st.size(); ++i)
    if (st[i].state != "done") out.push_back(i);
  return out;
}

double now_s() { return unix_time_now(); }

}  // namespace

std::string self_exe() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw Error(fmt::format("sweep: cannot find this program's path (/proc/self/exe): {}", ec.message()));
  return p.string();
}

std::string prepare_sweep_dir(const SweepSpec& spec, const std::string& dir_arg) {
  const std::string cwd = fs::current_path().string();
  const std::string rel = !dir_arg.empty() ? dir_arg
                          : !spec.dir.empty() ? spec.dir
                          : (fs::path("runs") / (spec.source.empty() ? "multirun" : "sweeps") / spec.name).string();
  const std::string dir = fs::absolute(rel).lexically_normal().string();
  json fresh = sweep_manifest(spec, dir, cwd);
  if (fs::exists(fs::path(dir) / "manifest.json")) {
    json old = read_manifest(dir);
    auto same = [&](const json& a, const json& b) {
      if (a["base"] != b["base"] || a["points"].size() != b["points"].size()) return false;
      for (size_t i = 0; i < a["points"].size(); ++i)
        if (a["points"][i]["overrides"] != b["points"][i]["overrides"]) return false;
      return true;
    };
    if (!same(old, fresh))
      throw InputError(fmt::format("sweep directory '{}' holds a different sweep (other base config or points); give another "
                                   "directory (--dir, or dir: in the sweep file) or remove it",
                                   dir));
    return dir;  // the same sweep: a rerun continues it
  }
  if (fs::exists(dir) && !fs::is_empty(dir))
    throw InputError(fmt::format("'{}' exists and is not a sweep directory; choose another (--dir)", dir));
  fs::create_directories(dir);
  write_manifest(dir, fresh);
  if (!spec.source.empty()) fs::copy_file(spec.source, fs::path(dir) / "sweep.yaml", fs::copy_options::overwrite_existing);
  return dir;
}

int run_point(const std::string& dir, long index) {
  const json m = read_manifest(dir);
  const size_t n = m["points"].size();
  if (index < 0 || size_t(index) >= n)
    throw InputError(fmt::format("run-point: --index {} is outside the sweep's points 0..{}", index, n - 1));
  const size_t i = size_t(index);
  PointStatus s = read_point_status(dir, i);
  if (s.state == "done") {
    std::printf("point %03zu is done already\n", i);
    return 0;
  }
  std::error_code ec;
  fs::current_path(m["cwd"].get<std::string>(), ec);
  if (ec) throw Error(fmt::format("run-point: cannot enter the sweep's working directory '{}': {}", m["cwd"].get<std::string>(), ec.message()));
  const std::string pdir = point_dir(dir, i);
  fs::create_directories(pdir);
  const bool resume = newest_good_checkpoint(pdir).has_value();
  const std::vector<std::string> argv = train_argv(m, dir, i, resume);
  const std::string log = (fs::path(pdir) / "log.txt").string();
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(fmt::format("run-point: cannot open '{}': {}", log, std::strerror(errno)));
  std::string cmd;
  for (auto& a : argv) cmd += (cmd.empty() ? "" : " ") + shell_quote(a);
  std::string head = fmt::format("=== attempt {} on {} ({}): {}\n", s.attempts + 1, hostname(), resume ? "resuming" : "fresh", cmd);
  if (::write(fd, head.data(), head.size()) < 0) {
  }

  s.state = "running";
  s.host = hostname();
  s.pid = getpid();
  s.started = now_s();
  s.ended = 0;
  s.exit_code = -1;
  s.signal = 0;
  s.reason.clear();
  ++s.attempts;
  write_point_status(dir, i, s);

  on_signals(forward_signal);
  const auto t0 = std::chrono::steady_clock::now();
  pid_t child = spawn(argv, {}, fd);
  g_child = child;
  if (g_signal) ::kill(child, SIGTERM);  // a signal between the handler and g_child
  ::close(fd);
  int st = 0;
  wait_child(child, &st);
  g_child = 0;
  s.train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  s.wall_s += s.train_s;
  s.ended = now_s();
  const std::string tail = log_tail(log, 6);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
    // strata train exits 0 both when it finished and when a signal made it checkpoint and stop.
    const std::string last = tail.substr(tail.rfind('\n') == std::string::npos ? 0 : tail.rfind('\n') + 1);
    s.exit_code = 0;
    s.state = last.rfind("done at step", 0) == 0 ? "done" : "interrupted";
    if (s.state == "interrupted") s.reason = "stopped by a signal with a checkpoint saved; the next run of this point resumes it";
  } else {
    s.state = "failed";
    if (WIFSIGNALED(st)) {
      s.signal = WTERMSIG(st);
      s.reason = fmt::format("killed by signal {} ({}){}", s.signal, strsignal(s.signal),
                             s.signal == SIGKILL ? ": out of memory, or a time limit?" : "");
    } else {
      s.exit_code = WEXITSTATUS(st);
      s.reason = fmt::format("exit code {}{}", s.exit_code, s.exit_code == 2 ? " (bad input)" : "");
    }
    s.reason += "; last lines of " + log + ":\n" + tail;
  }
  write_point_status(dir, i, s);
  return s.state == "failed" ? (s.exit_code > 0 ? s.exit_code : 1) : 0;
}

int run_local(const std::string& dir, int parallel, bool dry_run) {
  const json m = read_manifest(dir);
  const std::vector<size_t> todo = not_done(dir);
  const size_t n = m["points"].size();
  const int cores = available_cores();
  const int want = parallel == 0 ? int(todo.size()) : parallel;  // 0: every point at once
  const int k = std::max(1, std::min(want, int(todo.size())));
  const int threads = std::max(1, cores / k);
  if (dry_run) {
    std::printf("# %zu points, %zu to run, %d at a time with OMP_NUM_THREADS=%d (%d cores); each runs as:\n", n, todo.size(), k,
                threads, cores);
    for (size_t i : todo) {
      std::string cmd;
      for (auto& a : train_argv(m, dir, i, false)) cmd += (cmd.empty() ? "" : " ") + shell_quote(a);
      const std::string pd = shell_quote(point_dir(dir, i));
      std::printf("cd %s && mkdir -p %s && OMP_NUM_THREADS=%d %s > %s/log.txt 2>&1\n", shell_quote(m["cwd"].get<std::string>()).c_str(),
                  pd.c_str(), threads, cmd.c_str(), pd.c_str());
    }
    return 0;
  }
  std::fprintf(stderr, "sweep %s: %zu points, %zu to run, %d at a time, %d threads each -> %s\n", m.value("name", "").c_str(), n,
               todo.size(), k, threads, dir.c_str());
  on_signals(forward_signal);  // g_child stays 0: the children get Ctrl-C from the terminal themselves
  std::map<pid_t, size_t> running;
  size_t next = 0, finished = 0;
  int failed = 0;
  const std::string exe = self_exe();
  while (true) {
    while (!g_signal && int(running.size()) < k && next < todo.size()) {
      const size_t i = todo[next++];
      pid_t p = spawn({exe, "sweep", "run-point", dir, "--index", std::to_string(i)}, {{"OMP_NUM_THREADS", std::to_string(threads)}}, -1);
      running[p] = i;
    }
    if (running.empty()) break;
    int st = 0;
    pid_t p = waitpid(-1, &st, 0);
    if (p < 0) {
      if (errno == EINTR) {
        for (auto& [pid, i] : running) ::kill(pid, SIGTERM);  // each forwards it to its train process
        continue;
      }
      break;
    }
    auto it = running.find(p);
    if (it == running.end()) continue;
    const size_t i = it->second;
    running.erase(it);
    ++finished;
    PointStatus s = read_point_status(dir, i);
    std::string what = s.state;
    if (s.state == "done") what += fmt::format(" in {:.1f} s", s.train_s);
    if (s.state == "failed") {
      ++failed;
      what += ": " + s.reason.substr(0, s.reason.find(';'));
    }
    std::fprintf(stderr, "[%zu/%zu] point %03zu (%s): %s\n", finished, todo.size(), i, point_values_text(m, i).c_str(), what.c_str());
  }
  refresh_states(dir);
  if (g_signal) {
    std::fprintf(stderr, "sweep interrupted: running points saved checkpoints; rerun the same command to continue\n");
    return 130;
  }
  std::fprintf(stderr, "sweep %s: %zu run, %d failed. Table and plots: strata sweep results %s\n", m.value("name", "").c_str(),
               finished, failed, dir.c_str());
  return failed ? 1 : 0;
}

int submit_slurm(const SweepSpec& spec, const std::string& dir, int parallel, bool dry_run, bool wait) {
  const json m = read_manifest(dir);
  const std::vector<size_t> todo = not_done(dir);
  if (todo.empty()) {
    std::fprintf(stderr, "every point of %s is done; nothing to submit\n", dir.c_str());
    return 0;
  }
  const SlurmResources& r = spec.slurm;
  std::string s = "#!/bin/bash\n";
  s += fmt::format("# strata sweep '{}': one array task per point (strata sweep run-point); written by strata sweep\n",
                   m.value("name", ""));
  s += fmt::format("#SBATCH --job-name=strata-{}\n", m.value("name", "sweep"));
  s += fmt::format("#SBATCH --array={}{}\n", index_ranges(todo), parallel > 0 ? fmt::format("%{}", parallel) : "");
  s += fmt::format("#SBATCH --output={}/slurm-%A_%a.out\n", dir);
  if (r.cpus_per_task > 0) s += fmt::format("#SBATCH --cpus-per-task={}\n", r.cpus_per_task);
  if (!r.partition.empty()) s += fmt::format("#SBATCH --partition={}\n", r.partition);
  if (!r.time.empty()) s += fmt::format("#SBATCH --time={}\n", r.time);
  if (!r.mem.empty()) s += fmt::format("#SBATCH --mem={}\n", r.mem);
  if (!r.account.empty()) s += fmt::format("#SBATCH --account={}\n", r.account);
  if (!r.qos.empty()) s += fmt::format("#SBATCH --qos={}\n", r.qos);
  if (!r.gres.empty()) s += fmt::format("#SBATCH --gres={}\n", r.gres);
  // 90 s before the time limit Slurm signals the batch shell (B:), which asks the point to save a
  // checkpoint and requeues the task; the requeued task resumes from that checkpoint.
  s += "#SBATCH --signal=B:USR1@90\n#SBATCH --requeue\n#SBATCH --open-mode=append\n";
  for (auto& e : r.extra) s += fmt::format("#SBATCH {}\n", e);
  s += "set -u\n";
  s += fmt::format("cd {}\n", shell_quote(m["cwd"].get<std::string>()));
  if (!r.setup.empty()) s += r.setup + (r.setup.back() == '\n' ? "" : "\n");
  s += "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}\n";
  s += fmt::format("{} sweep run-point {} --index \"$SLURM_ARRAY_TASK_ID\" &\n", shell_quote(self_exe()), shell_quote(dir));
  s += "pid=$!\nrequeue=0\n";
  s += "trap 'requeue=1; kill -TERM \"$pid\"' USR1\n";
  s += "wait \"$pid\"; rc=$?\n";
  s += "# `wait` returns early when the trap runs: wait again until the point has checkpointed and exited.\n";
  s += "while kill -0 \"$pid\" 2>/dev/null; do wait \"$pid\"; rc=$?; done\n";
  s += "if [ \"$requeue\" = 1 ]; then scontrol requeue \"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"; fi\n";
  s += "exit $rc\n";
  const std::string script = (fs::path(dir) / "sweep.sbatch").string();
  { std::ofstream(script) << s; }
  for (size_t i : todo) fs::create_directories(point_dir(dir, i));  // for the --output files
  if (dry_run) {
    std::fputs(s.c_str(), stdout);
    std::fprintf(stderr, "wrote %s (not submitted: --dry-run)\n", script.c_str());
    return 0;
  }
  std::string cmd = fmt::format("sbatch --parsable{} {} 2>&1", wait ? " --wait" : "", shell_quote(script));
  std::FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw Error(fmt::format("sweep: cannot run sbatch: {}", std::strerror(errno)));
  std::string out;
  char buf[4096];
  if (!wait) {
    while (size_t k = std::fread(buf, 1, sizeof(buf), p)) out.append(buf, k);
  } else {
    // With --wait sbatch prints the job id at once, then blocks: record the id before waiting.
    while (std::fgets(buf, sizeof(buf), p)) {
      out += buf;
      if (out.find('\n') != std::string::npos) break;
    }
  }
  std::string job = out.substr(0, out.find_first_of("\n;"));
  const bool ok_id = !job.empty() && job.find_first_not_of("0123456789") == std::string::npos;
  if (ok_id) {
    update_manifest(dir, [&](json& mm) { mm["slurm_jobs"].push_back(job); });
    std::fprintf(stderr, "submitted %s as Slurm job %s (array %s); watch: strata sweep status %s\n", script.c_str(), job.c_str(),
                 index_ranges(todo).c_str(), dir.c_str());
  }
  while (std::fgets(buf, sizeof(buf), p)) out += buf;
  int st = pclose(p);
  int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 1;
  if (!ok_id) {
    if (rc == 127 || out.find("not found") != std::string::npos)
      throw InputError(fmt::format("sweep: sbatch is not available ({}); install Slurm, or start a one-node cluster with "
                                   "scripts/slurm_local.sh up; {} is written",
                                   out.substr(0, out.find('\n')), script));
    throw Error(fmt::format("sweep: sbatch failed (exit {}): {}", rc, out));
  }
  if (wait) {
    std::fprintf(stderr, "Slurm job %s finished (sbatch exit %d)\n", job.c_str(), rc);
    refresh_states(dir);
  }
  return wait ? rc : 0;
}

}  // namespace strata
