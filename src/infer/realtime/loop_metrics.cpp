#include "infer/realtime/loop_metrics.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace strata::rt {

Quantiles quantiles(std::vector<double> v) {
  Quantiles q;
  q.n = int64_t(v.size());
  if (v.empty()) return q;
  std::sort(v.begin(), v.end());
  auto rank = [&](double p) { return v[size_t(std::clamp<double>(std::ceil(p * double(v.size())) - 1, 0, double(v.size() - 1)))]; };
  q.p50 = rank(0.5);
  q.p99 = rank(0.99);
  q.p999 = rank(0.999);
  q.max = v.back();
  double sum = 0;
  for (double x : v) sum += x;
  q.mean = sum / double(v.size());
  return q;
}

LoopSummary summarize(const std::vector<ControlTick>& ticks, int64_t n_ticks, const std::vector<PlannerTick>& plans,
                      int64_t n_plans, double period_ns) {
  LoopSummary s;
  s.ticks = n_ticks;
  std::vector<double> lat, jit, age, delay, plat;
  lat.reserve(size_t(n_ticks));
  jit.reserve(size_t(n_ticks));
  for (int64_t i = 0; i < n_ticks; ++i) {
    const ControlTick& t = ticks[size_t(i)];
    lat.push_back(double(t.latency_ns()) / 1e3);
    jit.push_back(double(t.jitter_ns()) / 1e3);
    s.misses += t.missed;
    if (t.missed) ++(double(t.latency_ns()) > period_ns ? s.misses_compute : s.misses_late_wake);
    if (t.plan_age < 0) {
      ++s.ticks_without_plan;
    } else {
      age.push_back(double(t.plan_age));
    }
    if (t.new_plan) {
      ++s.plans_used;
      delay.push_back(double(t.plan_age));
    }
    s.minor_faults += t.minor_faults;
    s.major_faults += t.major_faults;
    s.ticks_with_faults += (t.minor_faults + t.major_faults) > 0;
  }
  for (int64_t i = 0; i < n_plans; ++i) {
    plat.push_back(double(plans[size_t(i)].end_ns - plans[size_t(i)].wake_ns) / 1e6);
    s.planner_skipped += plans[size_t(i)].skipped;
  }
  s.planner_ticks = n_plans;
  s.latency_us = quantiles(std::move(lat));
  s.jitter_us = quantiles(std::move(jit));
  s.plan_age_ticks = quantiles(std::move(age));
  s.delay_ticks = quantiles(std::move(delay));
  s.planner_latency_ms = quantiles(std::move(plat));
  return s;
}

namespace {
nlohmann::json to_json(const Quantiles& q) {
  return {{"n", q.n}, {"p50", q.p50}, {"p99", q.p99}, {"p99.9", q.p999}, {"max", q.max}, {"mean", q.mean}};
}
}  // namespace

void write_metrics_jsonl(const std::string& path, const LoopSummary& s) {
  std::ofstream f(path, std::ios::app);
  if (!f) throw Error(fmt::format("metrics file {}: cannot open for writing", path));
  nlohmann::json setup = {{"kind", "setup"},
                          {"control_hz", s.control_hz},
                          {"planner_hz", s.planner_hz},
                          {"seconds", s.seconds},
                          {"policy", s.policy},
                          {"memory_locked", s.memory_locked},
                          {"controller_fifo", s.controller_fifo},
                          {"planner_fifo", s.planner_fifo},
                          {"host_steal_ms", s.host_steal_ms}};
  nlohmann::json ctl = {{"kind", "controller"},
                        {"ticks", s.ticks},
                        {"deadline_misses", s.misses},
                        {"misses_compute", s.misses_compute},
                        {"misses_late_wake", s.misses_late_wake},
                        {"ticks_without_plan", s.ticks_without_plan},
                        {"plans_used", s.plans_used},
                        {"exhausted_ticks", s.exhausted_ticks},
                        {"latency_us", to_json(s.latency_us)},
                        {"jitter_us", to_json(s.jitter_us)},
                        {"plan_age_ticks", to_json(s.plan_age_ticks)},
                        {"plan_delay_ticks", to_json(s.delay_ticks)},
                        {"minor_faults", s.minor_faults},
                        {"major_faults", s.major_faults},
                        {"ticks_with_faults", s.ticks_with_faults}};
  nlohmann::json pl = {{"kind", "planner"},
                       {"ticks", s.planner_ticks},
                       {"skipped_deadlines", s.planner_skipped},
                       {"latency_ms", to_json(s.planner_latency_ms)}};
  f << setup.dump() << "\n" << ctl.dump() << "\n" << pl.dump() << "\n";
  if (!f) throw Error(fmt::format("metrics file {}: write failed", path));
}

void print_table(std::FILE* out, const LoopSummary& s) {
  fmt::print(out, "real-time loop: controller {:g} Hz, planner {:g} Hz, hand-off {}, {:g} s ({} ticks)\n", s.control_hz,
             s.planner_hz, s.policy, s.seconds, s.ticks);
  fmt::print(out, "  mlockall {}, SCHED_FIFO controller {}, planner {}\n", s.memory_locked ? "yes" : "no",
             s.controller_fifo ? "yes" : "no", s.planner_fifo ? "yes" : "no");
  fmt::print(out, "  {:<22} {:>10} {:>10} {:>10} {:>10} {:>10}\n", "", "p50", "p99", "p99.9", "max", "mean");
  auto row = [&](const char* name, const Quantiles& q) {
    fmt::print(out, "  {:<22} {:>10.1f} {:>10.1f} {:>10.1f} {:>10.1f} {:>10.1f}\n", name, q.p50, q.p99, q.p999, q.max,
               q.mean);
  };
  row("control latency (us)", s.latency_us);
  row("control jitter (us)", s.jitter_us);
  row("plan age (ticks)", s.plan_age_ticks);
  row("plan delay (ticks)", s.delay_ticks);
  row("planner latency (ms)", s.planner_latency_ms);
  fmt::print(out, "  deadline misses {} / {} ticks; ticks without plan {}; plans used {}; exhausted-chunk ticks {}\n",
             s.misses, s.ticks, s.ticks_without_plan, s.plans_used, s.exhausted_ticks);
  fmt::print(out, "  misses from compute over a period {}, from late wake-ups {}; host CPU steal during the run {}\n",
             s.misses_compute, s.misses_late_wake,
             s.host_steal_ms < 0 ? std::string("unknown") : fmt::format("{:.0f} ms", s.host_steal_ms));
  fmt::print(out, "  page faults on the control thread: minor {}, major {} ({} ticks with any)\n", s.minor_faults,
             s.major_faults, s.ticks_with_faults);
  fmt::print(out, "  planner: {} ticks, {} deadlines skipped after overruns\n", s.planner_ticks, s.planner_skipped);
}

}  // namespace strata::rt
