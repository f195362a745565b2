#include "train/sweep_results.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "train/config_hparams.h"
#include "train/config_load.h"
#include "train/plot.h"
#include "train/sweep_dir.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace strata {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The metrics a run logged (metrics.jsonl; a torn last line is skipped).
void read_metrics(const fs::path& path, SweepRow& row) {
  std::ifstream f(path);
  std::vector<double> tps;
  for (std::string line; std::getline(f, line);) {
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("step")) continue;
    const int64_t step = j["step"].get<int64_t>();
    if (j.contains("val_loss") && j["val_loss"].is_number()) row.val_curve.emplace_back(step, j["val_loss"].get<double>());
    if (j.contains("loss") && j["loss"].is_number() && !j.contains("skipped_nonfinite")) {
      row.train_curve.emplace_back(step, j["loss"].get<double>());
      row.steps = std::max(row.steps, step);
    }
    if (j.contains("tokens_per_s") && j["tokens_per_s"].is_number()) tps.push_back(j["tokens_per_s"].get<double>());
  }
  // A resumed run logs its steps again from the checkpoint: keep the last record of each step.
  for (auto* c : {&row.train_curve, &row.val_curve}) {
    std::stable_sort(c->begin(), c->end(), [](auto& a, auto& b) { return a.first < b.first; });
    std::vector<std::pair<int64_t, double>> dedup;
    for (auto& p : *c) {
      if (!dedup.empty() && dedup.back().first == p.first) dedup.back() = p;
      else dedup.push_back(p);
    }
    *c = std::move(dedup);
  }
  if (!row.val_curve.empty()) {
    row.final_val = row.val_curve.back().second;
    row.best_val = row.val_curve.front().second;
    for (auto& p : row.val_curve) row.best_val = std::min(row.best_val, p.second);
  }
  if (!row.train_curve.empty()) row.final_train = row.train_curve.back().second;
  // The median window: robust to the slow first steps and to a noisy last window.
  if (!tps.empty()) {
    std::sort(tps.begin(), tps.end());
    row.tokens_per_s = tps[tps.size() / 2];
  }
}

std::string num(double v, const char* fmtstr = "{:.4f}") { return std::isfinite(v) ? fmt::format(fmt::runtime(fmtstr), v) : ""; }

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string md_cell(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '|' ? std::string("\\|") : c == '*' ? std::string("\\*") : std::string(1, c);
  return out;
}

// "lr=0.001 pattern=M*": the swept values under their last key component.
std::string values_label(const SweepResults& r, const SweepRow& row, size_t skip = size_t(-1)) {
  std::vector<std::string> parts;
  for (size_t k = 0; k < r.keys.size(); ++k)
    if (k != skip) parts.push_back(fmt::format("{}={}", r.keys[k].substr(r.keys[k].rfind('.') + 1), row.values[k]));
  return fmt::format("{}", fmt::join(parts, " "));
}

std::string point_label(const SweepResults& r, const SweepRow& row) { return fmt::format("{} {}", row.dir, values_label(r, row)); }

std::string file_safe(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ? c : '_';
  return out;
}

bool as_number(const std::string& s, double* v) {
  char* end = nullptr;
  *v = std::strtod(s.c_str(), &end);
  return !s.empty() && *end == '\0' && std::isfinite(*v);
}

}  // namespace

SweepResults collect_results(const std::string& dir) {
  const json m = read_manifest(dir);
  std::vector<PointStatus> states = refresh_states(dir);
  SweepResults r;
  r.name = m.value("name", "");
  r.dir = dir;
  for (auto& k : m["keys"]) r.keys.push_back(k.get<std::string>());
  for (size_t i = 0; i < m["points"].size(); ++i) {
    const json& p = m["points"][i];
    SweepRow row;
    row.index = i;
    row.dir = p.value("dir", fmt::format("{:03d}", i));
    row.state = states[i].state;
    row.final_val = row.best_val = row.final_train = row.tokens_per_s = kNaN;
    row.wall_s = states[i].wall_s > 0 ? states[i].wall_s : kNaN;
    const fs::path run = fs::path(dir) / row.dir;
    read_metrics(run / "metrics.jsonl", row);
    // The values the run used: what the point set, else the run's own resolved config.
    std::vector<HParam> used;
    bool need_config = false;
    for (auto& k : r.keys) need_config |= !p["values"].contains(k);
    if (need_config && fs::exists(run / "config.yaml")) {
      try {
        std::vector<std::string> bare;
        for (auto& k : r.keys) bare.push_back(k.substr(k.find_first_not_of("+~")));
        used = hparams_of(parse_config(read_text(run / "config.yaml"), (run / "config.yaml").string()), bare);
      } catch (const std::exception&) {
        used.clear();  // an unreadable config leaves those cells blank
      }
    }
    for (size_t k = 0; k < r.keys.size(); ++k) {
      if (p["values"].contains(r.keys[k])) row.values.push_back(p["values"][r.keys[k]].get<std::string>());
      else if (k < used.size()) row.values.push_back(used[k].kind == HParam::string ? used[k].text
                                                     : used[k].kind == HParam::boolean ? (used[k].flag ? "true" : "false")
                                                                                        : fmt::format("{}", used[k].num));
      else row.values.push_back("");
    }
    r.rows.push_back(std::move(row));
  }
  return r;
}

std::string results_markdown(const SweepResults& r) {
  std::string out = "| point |";
  for (auto& k : r.keys) out += " " + md_cell(k) + " |";
  out += " state | steps | final val loss | best val loss | final train loss | tokens/s | wall s |\n|---|";
  for (size_t k = 0; k < r.keys.size(); ++k) out += "---|";
  out += "---|--:|--:|--:|--:|--:|--:|\n";
  const SweepRow* best = nullptr;
  for (const SweepRow& row : r.rows) {
    out += "| " + row.dir + " |";
    for (auto& v : row.values) out += " " + md_cell(v) + " |";
    out += fmt::format(" {} | {} | {} | {} | {} | {} | {} |\n", row.state, row.steps, num(row.final_val), num(row.best_val),
                       num(row.final_train), num(row.tokens_per_s, "{:.0f}"), num(row.wall_s, "{:.1f}"));
    if (std::isfinite(row.best_val) && (!best || row.best_val < best->best_val)) best = &row;
  }
  std::map<std::string, int> count;
  for (const SweepRow& row : r.rows) ++count[row.state];
  std::string states;
  for (auto& [s, n] : count) states += (states.empty() ? "" : ", ") + fmt::format("{} {}", n, s);
  out += fmt::format("\n{} points: {}.", r.rows.size(), states);
  if (best) out += fmt::format(" Best val loss {:.4f}: point {} ({}).", best->best_val, best->dir, values_label(r, *best));
  return out + "\n";
}

std::string results_csv(const SweepResults& r) {
  std::string out = "point,dir,state";
  for (auto& k : r.keys) out += "," + csv_field(k);
  out += ",steps,final_val_loss,best_val_loss,final_train_loss,tokens_per_s,wall_s\n";
  for (const SweepRow& row : r.rows) {
    out += fmt::format("{},{},{}", row.index, row.dir, row.state);
    for (auto& v : row.values) out += "," + csv_field(v);
    out += fmt::format(",{},{},{},{},{},{}\n", row.steps, num(row.final_val, "{:.6g}"), num(row.best_val, "{:.6g}"),
                       num(row.final_train, "{:.6g}"), num(row.tokens_per_s, "{:.6g}"), num(row.wall_s, "{:.6g}"));
  }
  return out;
}

std::vector<std::string> write_result_plots(const SweepResults& r, const std::string& out_dir) {
  std::vector<std::string> written;
  auto curves = [&](bool val, const std::string& file) {
    std::vector<PlotSeries> series;
    for (const SweepRow& row : r.rows) {
      const auto& c = val ? row.val_curve : row.train_curve;
      if (c.empty()) continue;
      PlotSeries s{point_label(r, row), {}, {}};
      for (auto& [step, loss] : c) s.x.push_back(double(step)), s.y.push_back(loss);
      series.push_back(std::move(s));
    }
    if (series.empty()) return;
    PlotSpec spec;
    spec.title = fmt::format("{}: {} loss", r.name, val ? "validation" : "train");
    spec.x_label = "step";
    spec.y_label = val ? "val loss" : "train loss";
    spec.markers = val;
    const std::string path = (fs::path(out_dir) / file).string();
    write_png(path, render_plot(spec, series));
    written.push_back(path);
  };
  curves(false, "loss_curves.png");
  curves(true, "val_loss_curves.png");

  // Final val loss against each swept key; one series per combination of the other keys' values
  // (a grid then shows, e.g., one lr curve per pattern), or one series when that would be too many.
  for (size_t k = 0; k < r.keys.size(); ++k) {
    bool numeric = true;
    std::vector<std::string> cats;
    for (const SweepRow& row : r.rows) {
      double v;
      numeric &= as_number(row.values[k], &v);
      if (std::find(cats.begin(), cats.end(), row.values[k]) == cats.end()) cats.push_back(row.values[k]);
    }
    std::map<std::string, std::vector<std::pair<double, double>>> groups;
    for (const SweepRow& row : r.rows) {
      if (!std::isfinite(row.final_val)) continue;
      const std::string g = values_label(r, row, k);
      double x = 0;
      if (numeric) as_number(row.values[k], &x);
      else x = double(std::find(cats.begin(), cats.end(), row.values[k]) - cats.begin());
      groups[g].emplace_back(x, row.final_val);
    }
    if (groups.empty()) continue;
    if (groups.size() > 10) {
      std::vector<std::pair<double, double>> all;
      for (auto& [g, pts] : groups) all.insert(all.end(), pts.begin(), pts.end());
      groups = {{"all points", all}};
    }
    std::vector<PlotSeries> series;
    for (auto& [g, pts] : groups) {
      std::sort(pts.begin(), pts.end());
      PlotSeries s{g.empty() ? "final val loss" : g, {}, {}};
      for (auto& [x, y] : pts) s.x.push_back(x), s.y.push_back(y);
      series.push_back(std::move(s));
    }
    PlotSpec spec;
    spec.title = fmt::format("{}: final val loss vs {}", r.name, r.keys[k]);
    spec.x_label = r.keys[k];
    spec.y_label = "final val loss";
    spec.markers = true;
    spec.lines = numeric;
    if (numeric) {
      double lo = INFINITY, hi = -INFINITY;
      for (auto& s : series)
        for (double x : s.x) lo = std::min(lo, x), hi = std::max(hi, x);
      spec.log_x = lo > 0 && hi / lo >= 8;  // about a decade or more: lr, batch sizes
      if (spec.log_x) spec.x_label += " (log scale)";
    } else {
      spec.x_categories = cats;
    }
    const std::string path = (fs::path(out_dir) / ("final_val_loss_vs_" + file_safe(r.keys[k]) + ".png")).string();
    write_png(path, render_plot(spec, series));
    written.push_back(path);
  }
  return written;
}

}  // namespace strata
