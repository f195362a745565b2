#include "train/data.h"

#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"

namespace strata {

TextData::TextData(const std::string& path, float val_fraction) : path_(path), val_fraction_(val_fraction) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw InputError(fmt::format("data file '{}' is a directory, not a text file (data.path)", path));
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(fmt::format("data file '{}' not found or not readable (data.path)", path));
  bytes_.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  int64_t n = int64_t(bytes_.size());
  split_ = n - int64_t(double(n) * val_fraction);
  if (n < 64) throw InputError(fmt::format("data file '{}' has only {} bytes; need at least 64", path, n));
}

void TextData::require_windows(int64_t T) const {
  auto need = [&](const char* split, const std::string& part, int64_t have, const char* fix) {
    if (have >= T + 1) return;
    throw InputError(fmt::format("data file '{}' (data.path): the {} ({} with data.val_fraction={}) has {} bytes, fewer "
                                 "than train.seq + 1 = {}; {}",
                                 path_, split, part, val_fraction_, have, T + 1, fix));
  };
  need("training split", "the start of the file", train_size(), "use a longer file, lower data.val_fraction or lower train.seq");
  need("validation split", "the end of the file", val_size(), "raise data.val_fraction, lower train.seq or use a longer file");
}

static void window(const std::vector<uint8_t>& b, int64_t start, int32_t* ids, int32_t* targets, int64_t T) {
  for (int64_t t = 0; t < T; ++t) {
    ids[t] = b[size_t(start + t)];
    targets[t] = b[size_t(start + t + 1)];
  }
}

void TextData::train_batch(int32_t* ids, int32_t* targets, int64_t B, int64_t T, Rng& rng) const {
  if (split_ < T + 1)
    throw InputError(fmt::format("training split has {} bytes, fewer than train.seq + 1 = {}", split_, T + 1));
  for (int64_t b = 0; b < B; ++b) {
    int64_t start = int64_t(rng.below(uint64_t(split_ - T)));
    window(bytes_, start, ids + b * T, targets + b * T, T);
  }
}

void TextData::train_batch_rows(int32_t* ids, int32_t* targets, int64_t B, int64_t T, Rng& rng, int64_t row0,
                                int64_t rows) const {
  if (split_ < T + 1)
    throw InputError(fmt::format("training split has {} bytes, fewer than train.seq + 1 = {}", split_, T + 1));
  for (int64_t b = 0; b < B; ++b) {
    int64_t start = int64_t(rng.below(uint64_t(split_ - T)));  // drawn for every row, kept for ours
    if (b >= row0 && b < row0 + rows) window(bytes_, start, ids + (b - row0) * T, targets + (b - row0) * T, T);
  }
}

std::string TextData::describe() const {
  return fmt::format("'{}' ({} train / {} val bytes)", path_, train_size(), val_size());
}

void TextData::val_batch(int32_t* ids, int32_t* targets, int64_t B, int64_t T, int64_t i, int64_t of) const {
  int64_t n = val_size();
  if (n < T + 1)
    throw InputError(fmt::format("validation split has {} bytes, fewer than train.seq + 1 = {}; raise data.val_fraction", n, T + 1));
  int64_t span = n - T - 1, total = B * of;
  for (int64_t b = 0; b < B; ++b) {
    int64_t k = i * B + b;
    int64_t start = split_ + (total > 1 ? span * k / (total - 1) : 0);
    window(bytes_, start, ids + b * T, targets + b * T, T);
  }
}

}  // namespace strata
