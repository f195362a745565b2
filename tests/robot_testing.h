#pragma once
// The toy robot task the robot tests train on: a point that moves toward a goal, action =
// 0.3 * (goal - pos), pos += action. The goal is fixed per episode, so a policy must read it from
// the observation (obs keys "pos" and "goal", 2 floats each; actions 2 floats).
#include <string>
#include <utility>

#include "core/rng.h"
#include "train/episodes.h"

namespace strata::testing {

inline void write_reach_episodes(const std::string& path, int n, int T, uint64_t seed = 5) {
  EpisodeSet s;
  s.env_args = R"({"env_name": "toy-reach"})";
  Rng rng(seed);
  for (int e = 0; e < n; ++e) {
    Episode ep;
    ep.name = "demo_" + std::to_string(e);
    ep.length = T;
    float pos[2] = {rng.normal(), rng.normal()}, goal[2] = {rng.normal(), rng.normal()};
    EpisodeArray p{2, {}}, g{2, {}}, a{2, {}};
    for (int t = 0; t < T; ++t) {
      for (int d = 0; d < 2; ++d) {
        const float act = 0.3f * (goal[d] - pos[d]);
        p.data.push_back(pos[d]);
        g.data.push_back(goal[d]);
        a.data.push_back(act);
        pos[d] += act;
      }
      ep.rewards.push_back(0.0f);
      ep.dones.push_back(t == T - 1);
    }
    ep.obs["pos"] = p;
    ep.obs["goal"] = g;
    ep.actions = a;
    s.episodes.push_back(std::move(ep));
  }
  write_episodes(path, s);
}

}  // namespace strata::testing
