#include "train/synthetic_task.h"

#include <algorithm>
#include <charconv>
#include <sstream>

#include "core/error.h"
#include "train/synthetic_induction_heads.h"
#include "train/synthetic_mqar.h"
#include "train/synthetic_selective_copying.h"

namespace strata {

bool is_synthetic_kind(const std::string& kind) {
  return kind == "mqar" || kind == "selective_copying" || kind == "induction_heads";
}

std::string synthetic_kinds() { return "mqar, selective_copying, induction_heads"; }

SyntheticTask synthetic_task(const DataConfig& data) {
  if (data.kind == "mqar") return mqar_task(data.mqar);
  if (data.kind == "selective_copying") return selective_copying_task(data.selective_copying);
  if (data.kind == "induction_heads") return induction_heads_task(data.induction_heads);
  throw InputError(fmt::format("data.kind: '{}' is not a synthetic task; one of: {}", data.kind, synthetic_kinds()));
}

std::vector<int64_t> parse_eval_seqs(const std::string& text) {
  std::vector<int64_t> out;
  std::istringstream in(text);
  for (std::string w; in >> w;) {
    int64_t v = 0;
    auto [end, ec] = std::from_chars(w.data(), w.data() + w.size(), v);
    if (ec != std::errc() || end != w.data() + w.size() || v < 1)
      throw InputError(fmt::format("data.eval_seqs='{}': '{}' is not a positive sequence length; give lengths separated by "
                                   "spaces, e.g. \"256 1024 4096\"", text, w));
    if (std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
  }
  return out;
}

void sample_distinct(std::vector<int64_t>& out, int64_t n, int64_t k, Rng& rng) {
  STRATA_CHECK(k >= 0 && k <= n, "sample_distinct: {} of {}", k, n);
  out.clear();
  for (int64_t j = n - k; j < n; ++j) {
    int64_t t = int64_t(rng.below(uint64_t(j + 1)));
    out.push_back(std::find(out.begin(), out.end(), t) == out.end() ? t : j);
  }
  for (int64_t i = k - 1; i > 0; --i) std::swap(out[size_t(i)], out[size_t(rng.below(uint64_t(i + 1)))]);
}

}  // namespace strata
