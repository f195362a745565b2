#pragma once
// One JSON object per line (runs/<name>/metrics.jsonl), flushed line by line so that `tail -f`,
// pandas.read_json(lines=True) and a crash all see whole records.
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace strata {

class MetricsWriter {
 public:
  // append=false truncates. Appending after a crash that cut a line short first ends that line, so
  // the new records stay parseable (the torn one is left for the reader to skip).
  MetricsWriter(const std::string& path, bool append);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  // NaN/inf are written as null (JSON has no such numbers).
  void write(const nlohmann::json& record);
  const std::string& path() const { return path_; }

 private:
  std::FILE* f_ = nullptr;
  std::string path_;
};

}  // namespace strata
