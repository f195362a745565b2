#pragma once
// The toy robot task the robot tests train on: a point that moves toward a goal, action =
// 0.3 * (goal - pos), pos += action. The goal is fixed per episode, so a policy must read it from
// the observation (obs keys "pos" and "goal", 2 floats each; actions 2 floats).
#include <fmt/format.h>

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

// A tiny two-rate policy on those episodes: an MLP trunk config, a Mamba + MLP planner and a Mamba
// controller at 10 / 40 Hz (ratio 4), chunk 4, latent 8, a simulated planner delay of 2 ticks.
inline std::string robot_yaml(const std::string& episodes, const std::string& run_dir, int steps) {
  return fmt::format(R"(model:
  pattern: "-"
  mamba: {{head_dim: 8, d_state: 8, chunk: 8}}
robot:
  planner: {{pattern: "M-", d_model: 16}}
  controller: {{pattern: "M", d_model: 16}}
  planner_hz: 10
  control_hz: 40
  chunk: 4
  latent: 8
  planner_delay_ticks: 2
  loss: l1
  window: 16
  data: {{path: "{}", val_fraction: 0.2}}
train: {{steps: {}, batch: 4, eval_every: 0, eval_batches: 5, save_every: 0, log_every: 5, run_dir: "{}", seed: 3}}
optim: {{lr: 0.01, warmup: 5}}
)",
                     episodes, steps, run_dir);
}

}  // namespace strata::testing
