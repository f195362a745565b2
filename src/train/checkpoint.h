#pragma once
// Checkpoints: one HDF5 file per save (ARCHITECTURE.md §4).
//
//   /                 attrs: config (YAML), config_crc32c, strata_version, git_commit, format_version;
//                     optional: tokenizer_json (+ _crc32c), hf_config_json (+ _crc32c),
//                     tokenizer_config_json (+ _crc32c: the chat template) for models imported from
//                     Hugging Face (absent when empty; older files simply lack them)
//   /params/<name>    f32 dataset, attr crc32c (of the raw little-endian bytes)
//   /optim/m/<name>   same names and shapes as /params (or empty: a weights-only checkpoint)
//   /optim/v/<name>
//   /state            group; one int64/uint64 attribute per TrainState field
//   /norm_stats       optional group (robot policies): the episodes' normalisation statistics, as
//                     train/episodes.h save_norm_stats writes them
//   /quant/<name>     weight-only int8 / int4 weights (strata quantize; format_version 2, which only
//                     such files have, so that older builds refuse them by version): a group per
//                     weight with int64 attributes bits, rows, cols, a uint8 dataset 'q' and an f32
//                     dataset 'scales' (kernels/quant_weight.h), each with its crc32c attribute. Those
//                     weights are then absent from /params.
//
// Saves are atomic: written to "<path>.tmp", fsynced, renamed over <path>, directory fsynced, so a
// kill at any point leaves either the old file or the new one. Loads verify everything (format
// version, every group and field, every checksum) and throw strata::InputError naming the file and
// the reason. Datasets keep their save order (HDF5 creation order), so a round trip is bit-exact.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "layers/quant_linear.h"  // QuantTensor
#include "train/episodes.h"  // NormStats

namespace strata {

inline constexpr int64_t kCheckpointFormatVersion = 1;
inline constexpr int64_t kQuantCheckpointFormatVersion = 2;  // a checkpoint with /quant

struct NamedArray {
  std::string name;  // Hugging Face style, e.g. "layers.3.mixer.in_proj.weight"; no '/'
  Shape shape;
  std::vector<float> data;
};

// What a save reads: a view into memory owned elsewhere (e.g. the flat parameter buffer), so that a
// multi-GB model is not copied just to be written.
struct ArrayView {
  std::string name;
  Shape shape;
  const float* data = nullptr;  // numel(shape) floats
};

// Everything besides tensors that resume needs. Keep it a flat set of named integers: to add a
// field, add the member and one line to visit_fields (format_version goes up if old files must be
// refused rather than rejected for the missing field).
struct TrainState {
  int64_t step = 0;           // optimizer steps completed
  uint64_t rng_seed = 0;      // data-order Rng (seed, counter)
  uint64_t rng_counter = 0;
  int64_t data_cursor = 0;
  int64_t tokens_seen = 0;
  bool operator==(const TrainState&) const = default;
};

// Calls f(name, member&) for every TrainState field; the single list both save and load walk.
template <class S, class F> void visit_fields(S& s, F&& f) {
  f("step", s.step);
  f("rng_seed", s.rng_seed);
  f("rng_counter", s.rng_counter);
  f("data_cursor", s.data_cursor);
  f("tokens_seen", s.tokens_seen);
}

struct Checkpoint {
  std::string config_yaml;
  std::vector<NamedArray> params, adam_m, adam_v;  // adam_m/v: empty, or mirroring params
  TrainState state;
  std::string strata_version, git_commit;  // filled by load; a save always writes this build's
  std::string tokenizer_json;  // the model's tokenizer.json (model.vocab: tokenizer); "" when none
  std::string hf_config_json;  // the Hugging Face config.json it was imported from; "" when none
  std::optional<NormStats> norm_stats;  // robot policies: the statistics their inputs were normalised with
  std::string tokenizer_config_json;  // its tokenizer_config.json (chat template, special tokens); "" when none
  std::vector<QuantTensor> quant;  // weight-only quantised weights (not in params); empty for fp32 checkpoints
};

struct CheckpointView {
  std::string config_yaml;
  std::vector<ArrayView> params, adam_m, adam_v;
  TrainState state;
  std::string tokenizer_json, hf_config_json;
  std::optional<NormStats> norm_stats;
  std::string tokenizer_config_json;
  const std::vector<QuantTensor>* quant = nullptr;  // null or empty: an fp32 checkpoint
};
CheckpointView view_of(const Checkpoint& ck);

// Throws strata::Error (I/O failure, invalid names, m/v not mirroring params); a failed save
// removes its .tmp and leaves any existing <path> untouched.
void save_checkpoint(const std::string& path, const CheckpointView& ck);
void save_checkpoint(const std::string& path, const Checkpoint& ck);

// Throws strata::InputError: missing file, not HDF5, truncated/corrupt, wrong format version,
// missing group/dataset/attribute, checksum mismatch (naming the dataset), inconsistent shapes.
Checkpoint load_checkpoint(const std::string& path);
// The same checks as load_checkpoint, without keeping the tensors (one dataset in memory at a time).
void verify_checkpoint(const std::string& path);

// "ckpt-00001234.h5" (more digits past 10^8 steps).
std::string checkpoint_filename(int64_t step);

// Saves <run_dir>/ckpt-<step>.h5 (creating run_dir), then prunes to keep_last checkpoints: the one
// just written and the newest (by step) keep_last - 1 others; also deletes ckpt-*.h5.tmp left by
// killed saves. Returns the path written.
std::string save_in_run_dir(const std::string& run_dir, const CheckpointView& ck, int keep_last);
std::string save_in_run_dir(const std::string& run_dir, const Checkpoint& ck, int keep_last);

// The newest ckpt-*.h5 in run_dir that passes verify_checkpoint, or nullopt. Each newer file that
// fails is skipped and described in *why_skipped ("<path>: <reason>; ..."), which is cleared first.
// *.tmp leftovers are never candidates.
std::optional<std::string> newest_good_checkpoint(const std::string& run_dir, std::string* why_skipped = nullptr);

}  // namespace strata
