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
  std::map<int64_t, int64_t> acc_at_step;  // L -> the step of the val_acc@L kept
  for (std::string line; std::getline(f, line);) {
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("step")) continue;
    const int64_t step = j["step"].get<int64_t>();
    if (j.contains("val_loss") && j["val_loss"].is_number()) row.val_curve.emplace_back(step, j["val_loss"].get<double>());
    if (j.contains("val_acc") && j["val_acc"].is_number()) row.acc_curve.emplace_back(step, j["val_acc"].get<double>());
    // val_acc@L: the record at the largest step wins below (a resumed run repeats steps).
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key().rfind("val_acc@", 0) != 0 || !it.value().is_number()) continue;
      char* end = nullptr;
      const long long L = std::strtoll(it.key().c_str() + 8, &end, 10);
      if (*end == '\0' && L > 0 && step >= acc_at_step[L]) acc_at_step[L] = step, row.final_acc_at[L] = it.value().get<double>();
    }
    if (j.contains("loss") && j["loss"].is_number() && !j.contains("skipped_nonfinite")) {
      row.train_curve.emplace_back(step, j["loss"].get<double>());
      row.steps = std::max(row.steps, step);
    }
    if (j.contains("tokens_per_s") && j["tokens_per_s"].is_number()) tps.push_back(j["tokens_per_s"].get<double>());
  }
  // A resumed run logs its steps again from the checkpoint: keep the last record of each step.
  for (auto* c : {&row.train_curve, &row.val_curve, &row.acc_curve}) {
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
  if (!row.acc_curve.empty()) {
    row.final_acc = row.acc_curve.back().second;
    row.best_acc = row.acc_curve.front().second;
    for (auto& p : row.acc_curve) row.best_acc = std::max(row.best_acc, p.second);
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

// The accuracy cells of a row: final, best, then val_acc@L for every length of the sweep (blank where
// this run did not measure it).
std::string acc_cells(const SweepResults& r, const SweepRow& row, const char* cell, const char* fmtstr = "{:.4f}") {
  std::string out = fmt::format(fmt::runtime(cell), num(row.final_acc, fmtstr)) + fmt::format(fmt::runtime(cell), num(row.best_acc, fmtstr));
  for (int64_t L : r.acc_lengths) {
    auto it = row.final_acc_at.find(L);
    out += fmt::format(fmt::runtime(cell), it == row.final_acc_at.end() ? std::string() : num(it->second, fmtstr));
  }
  return out;
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
    row.final_val = row.best_val = row.final_train = row.tokens_per_s = row.final_acc = row.best_acc = kNaN;
    row.wall_s = states[i].wall_s > 0 ? states[i].wall_s : kNaN;
    const fs::path run = fs::path(dir) / row.dir;
    read_metrics(run / "metrics.jsonl", row);
    // The values the run used: what the point set, else the run's own resolved config. An accuracy
    // run also needs its train.seq (the length of val_acc, the first point of val_acc_vs_length).
    std::vector<HParam> used;
    bool need_config = !row.acc_curve.empty();
    for (auto& k : r.keys) need_config |= !p["values"].contains(k);
    if (need_config && fs::exists(run / "config.yaml")) {
      try {
        std::vector<std::string> bare;
        for (auto& k : r.keys) bare.push_back(k.substr(k.find_first_not_of("+~")));
        const Config cfg = parse_config(read_text(run / "config.yaml"), (run / "config.yaml").string());
        used = hparams_of(cfg, bare);
        row.train_seq = cfg.train.seq;
      } catch (const std::exception&) {
        used.clear();  // an unreadable config leaves those cells blank
      }
    }
    r.has_acc |= !row.acc_curve.empty();
    for (auto& [L, acc] : row.final_acc_at)
      if (std::find(r.acc_lengths.begin(), r.acc_lengths.end(), L) == r.acc_lengths.end()) r.acc_lengths.push_back(L);
    for (size_t k = 0; k < r.keys.size(); ++k) {
      if (p["values"].contains(r.keys[k])) row.values.push_back(p["values"][r.keys[k]].get<std::string>());
      else if (k < used.size()) row.values.push_back(used[k].kind == HParam::string ? used[k].text
                                                     : used[k].kind == HParam::boolean ? (used[k].flag ? "true" : "false")
                                                                                        : fmt::format("{}", used[k].num));
      else row.values.push_back("");
    }
    r.rows.push_back(std::move(row));
  }
  std::sort(r.acc_lengths.begin(), r.acc_lengths.end());
  return r;
}

std::string results_markdown(const SweepResults& r) {
  std::string out = "| point |";
  for (auto& k : r.keys) out += " " + md_cell(k) + " |";
  out += " state | steps | final val loss | best val loss |";
  if (r.has_acc) {
    out += " final val acc | best val acc |";
    for (int64_t L : r.acc_lengths) out += fmt::format(" val acc@{} |", L);
  }
  out += " final train loss | tokens/s | wall s |\n|---|";
  for (size_t k = 0; k < r.keys.size(); ++k) out += "---|";
  out += "---|--:|--:|--:|";
  if (r.has_acc)
    for (size_t c = 0; c < 2 + r.acc_lengths.size(); ++c) out += "--:|";
  out += "--:|--:|--:|\n";
  const SweepRow *best = nullptr, *best_acc = nullptr;
  for (const SweepRow& row : r.rows) {
    out += "| " + row.dir + " |";
    for (auto& v : row.values) out += " " + md_cell(v) + " |";
    out += fmt::format(" {} | {} | {} | {} |", row.state, row.steps, num(row.final_val), num(row.best_val));
    if (r.has_acc) out += acc_cells(r, row, " {} |");
    out += fmt::format(" {} | {} | {} |\n", num(row.final_train), num(row.tokens_per_s, "{:.0f}"), num(row.wall_s, "{:.1f}"));
    if (std::isfinite(row.best_val) && (!best || row.best_val < best->best_val)) best = &row;
    if (std::isfinite(row.best_acc) && (!best_acc || row.best_acc > best_acc->best_acc)) best_acc = &row;
  }
  std::map<std::string, int> count;
  for (const SweepRow& row : r.rows) ++count[row.state];
  std::string states;
  for (auto& [s, n] : count) states += (states.empty() ? "" : ", ") + fmt::format("{} {}", n, s);
  out += fmt::format("\n{} points: {}.", r.rows.size(), states);
  if (best) out += fmt::format(" Best val loss {:.4f}: point {} ({}).", best->best_val, best->dir, values_label(r, *best));
  if (best_acc) out += fmt::format(" Best val acc {:.4f}: point {} ({}).", best_acc->best_acc, best_acc->dir, values_label(r, *best_acc));
  return out + "\n";
}

std::string results_csv(const SweepResults& r) {
  std::string out = "point,dir,state";
  for (auto& k : r.keys) out += "," + csv_field(k);
  out += ",steps,final_val_loss,best_val_loss";
  if (r.has_acc) {
    out += ",final_val_acc,best_val_acc";
    for (int64_t L : r.acc_lengths) out += fmt::format(",val_acc@{}", L);
  }
  out += ",final_train_loss,tokens_per_s,wall_s\n";
  for (const SweepRow& row : r.rows) {
    out += fmt::format("{},{},{}", row.index, row.dir, row.state);
    for (auto& v : row.values) out += "," + csv_field(v);
    out += fmt::format(",{},{},{}", row.steps, num(row.final_val, "{:.6g}"), num(row.best_val, "{:.6g}"));
    if (r.has_acc) out += acc_cells(r, row, ",{}", "{:.6g}");
    out += fmt::format(",{},{},{}\n", num(row.final_train, "{:.6g}"), num(row.tokens_per_s, "{:.6g}"), num(row.wall_s, "{:.6g}"));
  }
  return out;
}

std::vector<std::string> write_result_plots(const SweepResults& r, const std::string& out_dir) {
  std::vector<std::string> written;
  // One line per point against step: train loss, val loss, val accuracy.
  auto curves = [&](auto curve_of, const std::string& what, const std::string& file, bool markers) {
    std::vector<PlotSeries> series;
    for (const SweepRow& row : r.rows) {
      const std::vector<std::pair<int64_t, double>>& c = curve_of(row);
      if (c.empty()) continue;
      PlotSeries s{point_label(r, row), {}, {}};
      for (auto& [step, y] : c) s.x.push_back(double(step)), s.y.push_back(y);
      series.push_back(std::move(s));
    }
    if (series.empty()) return;
    PlotSpec spec;
    spec.title = fmt::format("{}: {}", r.name, what);
    spec.x_label = "step";
    spec.y_label = what;
    spec.markers = markers;  // the sparse evaluation points, not the dense train-loss log
    const std::string path = (fs::path(out_dir) / file).string();
    write_png(path, render_plot(spec, series));
    written.push_back(path);
  };
  curves([](const SweepRow& row) -> auto& { return row.train_curve; }, "train loss", "loss_curves.png", false);
  curves([](const SweepRow& row) -> auto& { return row.val_curve; }, "validation loss", "val_loss_curves.png", true);
  if (r.has_acc) curves([](const SweepRow& row) -> auto& { return row.acc_curve; }, "validation accuracy", "val_acc_curves.png", true);

  // A final metric against each swept key; one series per combination of the other keys' values
  // (a grid then shows, e.g., one lr curve per pattern), or one series when that would be too many.
  auto against_keys = [&](double SweepRow::*metric, const std::string& what, const std::string& stem) {
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
        if (!std::isfinite(row.*metric)) continue;
        const std::string g = values_label(r, row, k);
        double x = 0;
        if (numeric) as_number(row.values[k], &x);
        else x = double(std::find(cats.begin(), cats.end(), row.values[k]) - cats.begin());
        groups[g].emplace_back(x, row.*metric);
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
        PlotSeries s{g.empty() ? what : g, {}, {}};
        for (auto& [x, y] : pts) s.x.push_back(x), s.y.push_back(y);
        series.push_back(std::move(s));
      }
      PlotSpec spec;
      spec.title = fmt::format("{}: {} vs {}", r.name, what, r.keys[k]);
      spec.x_label = r.keys[k];
      spec.y_label = what;
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
      const std::string path = (fs::path(out_dir) / (stem + "_vs_" + file_safe(r.keys[k]) + ".png")).string();
      write_png(path, render_plot(spec, series));
      written.push_back(path);
    }
  };
  against_keys(&SweepRow::final_val, "final val loss", "final_val_loss");
  if (r.has_acc) against_keys(&SweepRow::final_acc, "final val acc", "final_val_acc");

  // Extrapolation: the final accuracy at train.seq and at every val_acc@L length, one line per point.
  if (!r.acc_lengths.empty()) {
    std::vector<PlotSeries> series;
    for (const SweepRow& row : r.rows) {
      if (row.final_acc_at.empty()) continue;
      std::map<int64_t, double> at = row.final_acc_at;
      if (row.train_seq > 0 && std::isfinite(row.final_acc)) at[row.train_seq] = row.final_acc;
      // The lengths are the x axis: data.eval_seqs, when swept, would only crowd the legend.
      const size_t seqs_key = size_t(std::find(r.keys.begin(), r.keys.end(), "data.eval_seqs") - r.keys.begin());
      PlotSeries s{fmt::format("{} {}", row.dir, values_label(r, row, seqs_key)), {}, {}};
      for (auto& [L, acc] : at) s.x.push_back(double(L)), s.y.push_back(acc);
      series.push_back(std::move(s));
    }
    PlotSpec spec;
    spec.title = fmt::format("{}: final val acc vs length", r.name);
    spec.x_label = "sequence length (log scale)";
    spec.y_label = "final val acc";
    spec.markers = true;
    spec.log_x = true;
    const std::string path = (fs::path(out_dir) / "val_acc_vs_length.png").string();
    write_png(path, render_plot(spec, series));
    written.push_back(path);
  }
  return written;
}

}  // namespace strata
