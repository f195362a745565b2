#pragma once
// The robot trainer's data: an episodes file (train/episodes.h) cut into segments of robot.window
// control ticks that start at planner ticks (multiples of the rate ratio), as models/multirate.h's
// RobotBatch wants them: normalised observations (the selected keys, concatenated in sorted key
// order) and actions, masks past an episode's end, and each planner tick's target chunk.
#include <cstdint>
#include <string>
#include <vector>

#include "core/rng.h"
#include "models/config.h"
#include "models/multirate.h"
#include "train/episodes.h"

namespace strata {

class RobotData {
 public:
  // Reads rc.data.path (InputError naming it on a bad file or an unknown obs key), splits by episode
  // with `seed`, and normalises with `stats` when given (a checkpoint's), else with statistics of
  // the train split.
  RobotData(const RobotConfig& rc, uint64_t seed, const NormStats* stats = nullptr);

  const EpisodeSet& episodes() const { return set_; }
  const EpisodeSplit& split() const { return split_; }
  const NormStats& stats() const { return stats_; }
  int64_t obs_dim() const { return obs_dim_; }
  int64_t action_dim() const { return set_.action_dim; }
  int64_t train_segments() const { return int64_t(train_.size()); }
  int64_t val_segments() const { return int64_t(val_.size()); }

  // B train segments drawn uniformly with rng.below (the Rng's state is what resume restores).
  void sample(int64_t B, Rng& rng, RobotBatch& out) const;
  // Validation batch `index` of `count`: segments spread evenly over the val split.
  void val_batch(int64_t B, int64_t index, int64_t count, RobotBatch& out) const;

 private:
  struct Segment {
    int64_t episode, start;
  };
  void resize(RobotBatch& out, int64_t B) const;
  void fill(RobotBatch& out, int64_t row, const Segment& s) const;

  int64_t W_, ratio_, K_;
  EpisodeSet set_;
  EpisodeSplit split_;
  NormStats stats_;
  int64_t obs_dim_ = 0;
  std::vector<Segment> train_, val_;
  std::vector<std::vector<float>> obs_, act_;  // per episode: normalised [T, obs_dim], [T, A]
};

}  // namespace strata
