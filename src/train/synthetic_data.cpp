#include "train/synthetic_data.h"

#include "core/error.h"

namespace strata {

namespace {
constexpr uint64_t kValSeed = 0x5a11da7a0f00d5eeULL;  // the validation rows' streams (not train.seed)

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
}  // namespace

SyntheticData::SyntheticData(SyntheticTask task) : task_(std::move(task)) {}

void SyntheticData::require_windows(int64_t T) const {
  if (T >= task_.min_seq) return;
  throw InputError(fmt::format("data.kind={}: train.seq={} is shorter than the task's sequences need: at least {}",
                               task_.kind, T, task_.min_seq_rule));
}

void SyntheticData::train_batch_rows(int32_t* ids, int32_t* targets, int64_t B, int64_t T, Rng& rng, int64_t row0,
                                     int64_t rows) const {
  require_windows(T);
  for (int64_t b = 0; b < B; ++b) {
    uint64_t seed = uint64_t(rng.next_u32()) << 32;
    seed |= rng.next_u32();  // drawn for every row, the row generated only if it is ours
    if (b < row0 || b >= row0 + rows) continue;
    Rng row(seed, 0);
    task_.generate(ids + (b - row0) * T, targets + (b - row0) * T, T, row);
  }
}

void SyntheticData::val_rows(int32_t* ids, int32_t* targets, int64_t k0, int64_t rows, int64_t T) const {
  require_windows(T);
  for (int64_t r = 0; r < rows; ++r) {
    Rng row(splitmix64(kValSeed ^ uint64_t(k0 + r)), 0);
    task_.generate(ids + r * T, targets + r * T, T, row);
  }
}

void SyntheticData::val_batch(int32_t* ids, int32_t* targets, int64_t B, int64_t T, int64_t i, int64_t /*of*/) const {
  val_rows(ids, targets, i * B, B, T);
}

std::string SyntheticData::describe() const {
  return fmt::format("synthetic {} (vocab {}, generated from train.seed)", task_.kind, task_.vocab);
}

}  // namespace strata
