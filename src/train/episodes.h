#pragma once
// Robot episodes in robomimic's HDF5 layout (https://robomimic.github.io/docs/datasets/overview.html):
//
//   /data                    attrs: total (int, sum of num_samples), env_args (JSON string)
//   /data/demo_N             attrs: num_samples (int, = T); optional: success (int 0/1, Meta-World)
//   /data/demo_N/obs/<key>   [T, dim] (or [T]: dim 1), any float or integer type; read as float32
//   /data/demo_N/actions     [T, action_dim]
//   /data/demo_N/rewards     [T]
//   /data/demo_N/dones       [T]
//
// Other members robomimic may hold (next_obs, states, /mask) are ignored. Reading checks everything
// a trainer would otherwise trip over later and throws strata::InputError naming the file, the demo
// and the key: missing groups/datasets/attributes, lengths that disagree, NaN/inf in observations or
// actions, num_samples or total disagreeing with the data, and (when the caller says what it
// expects, e.g. a checkpoint's) a wrong action dimension or observation key set.
//
// Then: normalisation statistics over the train split (saved into a checkpoint group), a
// deterministic train/val split by episode, and a sampler of (observation history, action chunk)
// windows drawn from a Philox stream.
#include <H5Ipublic.h>  // hid_t only: save/load_norm_stats take an open group of the caller's file

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/rng.h"

namespace strata {

// Row-major [T, dim].
struct EpisodeArray {
  int64_t dim = 0;
  std::vector<float> data;
  const float* row(int64_t t) const { return data.data() + t * dim; }
};

struct Episode {
  std::string name;  // "demo_0"; write_episodes renames to demo_<index>
  int64_t length = 0;  // T
  std::map<std::string, EpisodeArray> obs;  // by key, sorted
  EpisodeArray actions;
  std::vector<float> rewards;  // [T]
  std::vector<uint8_t> dones;  // [T], 0/1
  std::optional<bool> success;  // the demo's "success" attr, when present
};

struct EpisodeSet {
  std::string env_args;  // the JSON string of /data's env_args attr; "" when absent
  std::vector<Episode> episodes;  // in demo-number order (demo_2 before demo_10)
  // Set by read_episodes (every episode agrees); write_episodes derives them from the episodes.
  std::vector<std::string> obs_keys;  // sorted
  std::map<std::string, int64_t> obs_dims;
  int64_t action_dim = 0;
};

// What the caller requires of a file (a checkpoint's model, later). Empty/0 = whatever the file has,
// as long as all its episodes agree.
struct EpisodeExpect {
  std::vector<std::string> obs_keys;  // the exact key set (order irrelevant)
  std::map<std::string, int64_t> obs_dims;  // dims of some or all keys
  int64_t action_dim = 0;
};

EpisodeSet read_episodes(const std::string& path, const EpisodeExpect& expect = {});
// Atomic like a checkpoint save (.tmp, fsync, rename). Throws strata::Error on inconsistent input
// (lengths, dims, key sets) or I/O failure. Strings are fixed-length (h5py reads them as bytes;
// json.loads accepts those).
void write_episodes(const std::string& path, const EpisodeSet& set);

// ---- normalisation statistics -----------------------------------------------------------------

// Per feature: std has a floor (a constant feature, e.g. a gripper that never moves, would otherwise
// divide by ~0), so normalize() is always finite.
struct ArrayStats {
  std::vector<float> mean, std, min, max;
  void normalize(const float* x, float* out) const;    // (x - mean) / std, dim values
  void unnormalize(const float* x, float* out) const;  // x * std + mean
  bool operator==(const ArrayStats&) const = default;
};

struct NormStats {
  float std_floor = 0;
  std::map<std::string, ArrayStats> obs;
  ArrayStats actions;
  bool operator==(const NormStats&) const = default;
};

// Over every time step of the given episodes (the train split). std is the population std (divide
// by N), raised to std_floor. Throws InputError when the episodes hold no steps.
NormStats compute_norm_stats(const EpisodeSet& set, const std::vector<int64_t>& episodes, float std_floor = 1e-2f);
// Into / from an open HDF5 group: attr std_floor; obs/<key>/{mean,std,min,max}, actions/{...}, f32.
// Throws Error on write failure, InputError (naming `where` and the member) on a bad group.
void save_norm_stats(hid_t group, const NormStats& stats);
NormStats load_norm_stats(hid_t group, const std::string& where);

// ---- train / val split ------------------------------------------------------------------------

struct EpisodeSplit {
  std::vector<int64_t> train, val;  // episode indices, each sorted; disjoint; together 0..n-1
};
// A seeded shuffle (Philox) of 0..n-1; round(n * val_fraction) episodes go to val, clamped so that
// with n >= 2 and val_fraction > 0 each side has at least one. val_fraction in [0, 1).
EpisodeSplit split_episodes(int64_t n, float val_fraction, uint64_t seed);

// ---- windows ----------------------------------------------------------------------------------

// A window ending at step t of an episode: observations t-history+1 .. t and actions t .. t+K-1.
// Padding: observations before step 0 repeat step 0 (obs_mask 0); actions past the last step repeat
// the last action (action_mask 0), as ACT does: a loss should weight its terms by action_mask.
// Observations are the episode's keys concatenated in sorted key order (obs_layout), normalised
// when the sampler has stats.
struct WindowSpec {
  int64_t history = 1;  // >= 1
  int64_t horizon = 1;  // K >= 1
};

struct WindowBatch {
  int64_t B = 0;
  std::vector<float> obs;          // [B, history, obs_dim]
  std::vector<float> obs_mask;     // [B, history]: 1 real, 0 padding
  std::vector<float> actions;      // [B, K, action_dim]
  std::vector<float> action_mask;  // [B, K]
  std::vector<int64_t> episode, step;  // [B]: which episode (index into the set) and t
};

struct ObsSlice {
  std::string key;
  int64_t offset = 0, dim = 0;
};

class EpisodeSampler {
 public:
  // `episodes`: indices into set (e.g. a split's train side); stats may be null (raw values). Both
  // set and stats must outlive the sampler.
  EpisodeSampler(const EpisodeSet& set, std::vector<int64_t> episodes, WindowSpec spec, const NormStats* stats = nullptr);

  int64_t num_windows() const { return total_; }  // one per (episode, step)
  int64_t obs_dim() const { return obs_dim_; }
  int64_t action_dim() const { return set_.action_dim; }
  const std::vector<ObsSlice>& obs_layout() const { return layout_; }

  // Window i of the enumeration (episodes in the order given, then steps), into row b of out
  // (out must have been sized by resize()).
  void window(int64_t i, WindowBatch& out, int64_t b) const;
  // B windows drawn uniformly over all (episode, step) with rng.below: deterministic given the
  // Rng's (seed, counter), which is the resumable state.
  void sample(int64_t B, Rng& rng, WindowBatch& out) const;
  void resize(WindowBatch& out, int64_t B) const;

 private:
  const EpisodeSet& set_;
  std::vector<int64_t> episodes_;
  std::vector<int64_t> starts_;  // prefix sums of lengths: window i belongs to the last start <= i
  WindowSpec spec_;
  const NormStats* stats_;
  std::vector<ObsSlice> layout_;
  int64_t obs_dim_ = 0, total_ = 0;
};

}  // namespace strata
