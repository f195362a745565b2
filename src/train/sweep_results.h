#pragma once
// A sweep's results: per point, the swept values (as the run used them), its state, final and best
// validation loss, tokens/s and wall time, from each run directory's metrics.jsonl and status.json;
// for the synthetic tasks (data.kind mqar, ...) also the final and best accuracy and the final accuracy
// at every further evaluation length (val_acc@L). Written as a markdown table, a CSV file and PNG plots
// (train/plot.h).
#include <cstdint>
#include <map>
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
  // Synthetic tasks only (NaN / empty otherwise): val_acc at train.seq, and at each further length.
  double final_acc = 0, best_acc = 0;
  std::vector<std::pair<int64_t, double>> acc_curve;  // (step, val_acc)
  std::map<int64_t, double> final_acc_at;             // L -> the last val_acc@L
  int64_t train_seq = 0;                              // from the run's config.yaml; 0 when unknown
};

struct SweepResults {
  std::string name, dir;
  std::vector<std::string> keys;
  std::vector<SweepRow> rows;
  bool has_acc = false;              // some run logged val_acc: the accuracy columns and plots appear
  std::vector<int64_t> acc_lengths;  // the union of the runs' val_acc@L lengths, ascending
};

SweepResults collect_results(const std::string& dir);

std::string results_markdown(const SweepResults& r);
std::string results_csv(const SweepResults& r);

// loss_curves.png (train loss against step, every point overlaid), val_loss_curves.png, and one
// final_val_loss_vs_<key>.png per swept key; with accuracy also val_acc_curves.png,
// final_val_acc_vs_<key>.png per key and, with val_acc@L, val_acc_vs_length.png (the final accuracy
// against the evaluation length, one line per point). Returns the paths written.
std::vector<std::string> write_result_plots(const SweepResults& r, const std::string& out_dir);

}  // namespace strata
