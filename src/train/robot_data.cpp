#include "train/robot_data.h"

#include <algorithm>
#include <set>
#include <sstream>

#include "core/error.h"

namespace strata {

namespace {
std::vector<std::string> split_words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}
}  // namespace

RobotData::RobotData(const RobotConfig& rc, uint64_t seed, const NormStats* stats)
    : W_(rc.window), ratio_(rc.ratio()), K_(rc.chunk), set_(read_episodes(rc.data.path)) {
  const auto keys = split_words(rc.data.obs_keys);
  if (!keys.empty()) {
    for (auto& k : keys)
      if (!set_.obs_dims.count(k)) {
        std::string have;
        for (auto& h : set_.obs_keys) have += (have.empty() ? "" : ", ") + h;
        throw InputError(fmt::format("robot.data.obs_keys: '{}' is not an observation key of '{}' (it has: {})", k,
                                     rc.data.path, have));
      }
    const std::set<std::string> keep(keys.begin(), keys.end());
    for (auto& ep : set_.episodes)
      for (auto it = ep.obs.begin(); it != ep.obs.end();) it = keep.count(it->first) ? std::next(it) : ep.obs.erase(it);
    set_.obs_keys.assign(keep.begin(), keep.end());
    for (auto it = set_.obs_dims.begin(); it != set_.obs_dims.end();) it = keep.count(it->first) ? std::next(it) : set_.obs_dims.erase(it);
  }
  split_ = split_episodes(int64_t(set_.episodes.size()), rc.data.val_fraction, seed);
  stats_ = stats ? *stats : compute_norm_stats(set_, split_.train);
  for (auto& k : set_.obs_keys) {
    if (!stats_.obs.count(k))
      throw InputError(fmt::format("normalisation statistics have no observation key '{}' (from '{}')", k, rc.data.path));
    obs_dim_ += set_.obs_dims.at(k);
  }
  const int64_t A = set_.action_dim;
  for (auto& ep : set_.episodes) {
    std::vector<float> o(size_t(ep.length * obs_dim_)), a(size_t(ep.length * A));
    for (int64_t t = 0; t < ep.length; ++t) {
      int64_t off = 0;
      for (auto& k : set_.obs_keys) {
        const EpisodeArray& arr = ep.obs.at(k);
        stats_.obs.at(k).normalize(arr.row(t), o.data() + t * obs_dim_ + off);
        off += arr.dim;
      }
      stats_.actions.normalize(ep.actions.row(t), a.data() + t * A);
    }
    obs_.push_back(std::move(o));
    act_.push_back(std::move(a));
  }
  for (auto [ids, out] : {std::pair{&split_.train, &train_}, std::pair{&split_.val, &val_}})
    for (int64_t e : *ids)
      for (int64_t s = 0; s < set_.episodes[size_t(e)].length; s += ratio_) out->push_back({e, s});
  if (train_.empty()) throw InputError(fmt::format("'{}': the train split has no steps", rc.data.path));
}

void RobotData::resize(RobotBatch& out, int64_t B) const {
  const int64_t Tp = (W_ + ratio_ - 1) / ratio_, A = set_.action_dim;
  out.B = B, out.W = W_;
  out.obs.resize(size_t(B * W_ * obs_dim_));
  out.actions.resize(size_t(B * W_ * A));
  out.mask.resize(size_t(B * W_));
  out.chunk.resize(size_t(B * Tp * K_ * A));
  out.chunk_mask.resize(size_t(B * Tp * K_));
}

// Past the episode's end the last observation repeats and actions are masked out.
void RobotData::fill(RobotBatch& out, int64_t row, const Segment& s) const {
  const int64_t A = set_.action_dim, T = set_.episodes[size_t(s.episode)].length, Tp = (W_ + ratio_ - 1) / ratio_;
  const float* o = obs_[size_t(s.episode)].data();
  const float* a = act_[size_t(s.episode)].data();
  for (int64_t i = 0; i < W_; ++i) {
    const int64_t t = std::min(s.start + i, T - 1);
    const bool real = s.start + i < T;
    std::copy_n(o + t * obs_dim_, obs_dim_, out.obs.data() + (row * W_ + i) * obs_dim_);
    std::copy_n(a + t * A, A, out.actions.data() + (row * W_ + i) * A);
    out.mask[size_t(row * W_ + i)] = real ? 1.0f : 0.0f;
  }
  for (int64_t j = 0; j < Tp; ++j)
    for (int64_t k = 0; k < K_; ++k) {
      const int64_t t = s.start + j * ratio_ + k;
      const int64_t r = (row * Tp + j) * K_ + k;
      std::copy_n(a + std::min(t, T - 1) * A, A, out.chunk.data() + r * A);
      out.chunk_mask[size_t(r)] = t < T ? 1.0f : 0.0f;
    }
}

void RobotData::sample(int64_t B, Rng& rng, RobotBatch& out) const {
  resize(out, B);
  for (int64_t b = 0; b < B; ++b) fill(out, b, train_[size_t(rng.below(uint64_t(train_.size())))]);
}

void RobotData::val_batch(int64_t B, int64_t index, int64_t count, RobotBatch& out) const {
  STRATA_CHECK(!val_.empty(), "val_batch with an empty val split");
  resize(out, B);
  const int64_t n = int64_t(val_.size()), total = B * count;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t k = index * B + b;
    fill(out, b, val_[size_t(total >= n ? k % n : k * n / total)]);
  }
}

}  // namespace strata
