#pragma once
// A sweep's results: per point, the swept values (as the run used them), its state, final and best
// validation loss, tokens/s and wall time, from each run directory's metrics.jsonl and status.json.
// Written as a markdown table, a CSV file and PNG plots (train/plot.h).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace strata {

struct SweepRow {
  size_t index = 0;
  std::string dir, state;
  std::vector<std::string> values;  // one per swept key; a key a point leaves alone shows the config's value
  double final_val = 0, best_val = 0, final_train = 0, tokens_per_s = 0, wall_s = 0;  // NaN when unknown
  int64_t steps = 0;
  std::vector<std::pair<int64_t, double>> train_curve, val_curve;  // (step, loss)
};

struct SweepResults {
  std::string name, dir;
  std::vector<std::string> keys;
  std::vector<SweepRow> rows;
};

SweepResults collect_results(const std::string& dir);

std::string results_markdown(const SweepResults& r);
std::string results_csv(const SweepResults& r);

// loss_curves.png (train loss against step, every point overlaid), val_loss_curves.png, and one
// final_val_loss_vs_<key>.png per swept key; returns the paths written.
std::vector<std::string> write_result_plots(const SweepResults& r, const std::string& out_dir);

}  // namespace strata
