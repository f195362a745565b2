#include "train/robot_trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "kernels/cpu/optim.h"
#include "kernels/dispatch.h"
#include "train/checkpoint.h"
#include "train/config_hparams.h"
#include "train/config_load.h"
#include "train/metrics.h"
#include "train/progress.h"
#include "train/robot_data.h"
#include "train/run_lock.h"
#include "train/schedule.h"
#include "train/tensorboard.h"
#include "train/train_common.h"

namespace fs = std::filesystem;

namespace strata {

namespace {

// The sections that decide the parameters' shapes: two checkpoints are compatible when these match.
std::string policy_yaml(const Config& c) {
  Config m;
  m.model = c.model;
  m.robot = c.robot;
  m.robot.data = {};  // the same policy may be trained on another file
  m.robot.handoff = "hold";  // run-time only
  return to_yaml(m);
}

int64_t obs_dim_of(const NormStats& s) {
  int64_t d = 0;
  for (auto& [k, a] : s.obs) d += int64_t(a.mean.size());
  return d;
}

}  // namespace

TrainResult train_robot(const Config& cfg, const std::string& config_yaml, const TrainOptions& opts) {
  TrainResult res;
  res.run_dir = run_dir_for(cfg);
  const TrainConfig& tc = cfg.train;
  const RobotConfig& rc = cfg.robot;
  if (tc.device != "cpu")
    throw InputError(fmt::format("train.device: '{}': robot policies train on cpu for now", tc.device));
  if (tc.precision != "fp32")
    throw InputError(fmt::format("train.precision: '{}': robot policies train in fp32 for now", tc.precision));
  const std::vector<HParam> hparams = hparams_of(cfg, opts.hparams.empty() ? default_hparam_keys() : opts.hparams);

  fs::create_directories(res.run_dir);
  RunDirLock lock(res.run_dir);
  std::string why;
  auto existing = newest_good_checkpoint(res.run_dir, &why);
  std::optional<Checkpoint> ck;
  if (opts.resume) {
    if (!existing) throw InputError(fmt::format("--resume: no usable checkpoint in '{}'{}", res.run_dir, why.empty() ? "" : " (" + why + ")"));
    ck = load_checkpoint(*existing);
    Config saved = parse_config(ck->config_yaml, *existing + ":/config");
    if (policy_yaml(saved) != policy_yaml(cfg))
      throw InputError(fmt::format("checkpoint '{}' was written for a different robot policy config; refusing to resume.\n"
                                   "checkpoint:\n{}\ncurrent:\n{}",
                                   *existing, policy_yaml(saved), policy_yaml(cfg)));
    if (!ck->norm_stats) throw InputError(fmt::format("checkpoint '{}' has no /norm_stats: not a robot policy", *existing));
  } else if (existing) {
    throw InputError(fmt::format("run directory '{}' already has checkpoints ({}); pass --resume to continue it, "
                                 "or set train.run_dir to a new directory (nothing was overwritten)",
                                 res.run_dir, *existing));
  }
  // On resume the statistics are the checkpoint's, so the model sees exactly what it saw before.
  RobotData data(rc, tc.seed, ck ? &*ck->norm_stats : nullptr);
  MultiRatePolicy policy(cfg.model, rc, data.obs_dim(), data.action_dim(), tc.seed);
  ParamStore& ps = policy.params();
  const int64_t P = ps.numel();
  std::vector<float> adam_m(size_t(P), 0.0f), adam_v(size_t(P), 0.0f);
  const std::vector<uint8_t> decay = ps.decay_mask();
  Rng data_rng(tc.seed ^ 0xda7a5eedULL);
  int64_t step = 0, ticks_seen = 0;
  if (ck) {
    restore_into(ps, ps.flat(), ck->params, "parameter", *existing);
    restore_into(ps, adam_m.data(), ck->adam_m, "optimizer m", *existing);
    restore_into(ps, adam_v.data(), ck->adam_v, "optimizer v", *existing);
    step = ck->state.step;
    data_rng = Rng(ck->state.rng_seed, ck->state.rng_counter);
    ticks_seen = ck->state.tokens_seen;
    if (!why.empty() && !opts.quiet) fmt::print(stderr, "note: skipped unusable checkpoints: {}\n", why);
    if (!opts.quiet) fmt::print(stderr, "resuming from {} at step {}\n", *existing, step);
    ck.reset();
  }
  { std::ofstream(fs::path(res.run_dir) / "config.yaml") << config_yaml; }

  MetricsWriter metrics((fs::path(res.run_dir) / "metrics.jsonl").string(), /*append=*/opts.resume);
  TensorBoardWriter tb(res.run_dir);
  tb.add_hparams_experiment(hparams, {"train/loss", "val/loss"});
  tb.add_hparams_session_start(hparams, opts.hparams_group);
  Arena arena(Device::cpu);
  Ctx ctx{Device::cpu, &arena, true};
  const int64_t B = tc.batch, W = rc.window;
  RobotBatch batch;

  auto make_checkpoint = [&]() {
    Checkpoint c;
    c.config_yaml = config_yaml;
    c.params = views_of(ps, ps.flat());
    c.adam_m = views_of(ps, adam_m.data());
    c.adam_v = views_of(ps, adam_v.data());
    c.state.step = step;
    c.state.rng_seed = data_rng.seed;
    c.state.rng_counter = data_rng.counter;
    c.state.tokens_seen = ticks_seen;
    c.norm_stats = data.stats();
    return c;
  };
  auto evaluate = [&]() {
    if (data.val_segments() == 0) return -1.0f;
    double sum = 0;
    for (int i = 0; i < tc.eval_batches; ++i) {
      arena.reset();
      data.val_batch(B, i, tc.eval_batches, batch);
      sum += policy.eval_loss(ctx, batch);
    }
    return float(sum / tc.eval_batches);
  };

  if (!opts.quiet)
    fmt::print(stderr,
               "training {} (robot: planner '{}' x{} d{} at {} Hz, controller '{}' x{} d{} at {} Hz, latent {}, chunk {}, "
               "delay {} ticks; {:.3f}M params) on '{}' ({} episodes: {} train / {} val, obs {} -> action {}) -> {}\n",
               cfg.source_path, rc.planner.pattern, rc.planner.repeat, rc.planner.d_model, rc.planner_hz,
               rc.controller.pattern, rc.controller.repeat, rc.controller.d_model, rc.control_hz, rc.latent, rc.chunk,
               rc.planner_delay_ticks, double(P) / 1e6, rc.data.path, data.episodes().episodes.size(),
               data.split().train.size(), data.split().val.size(), data.obs_dim(), data.action_dim(), res.run_dir);
  SignalGuard signals;
  Progress progress(tc.steps, step, tc.log_every);
  auto t_start = std::chrono::steady_clock::now();
  auto t_window = t_start;
  int64_t ticks_window = 0, steps_this_run = 0;
  float loss = 0;
  int nonfinite_in_row = 0;
  while (step < tc.steps) {
    const float lr = learning_rate(cfg.optim, step, tc.steps);
    ps.zero_grad();
    double loss_sum = 0, ctrl_sum = 0, chunk_sum = 0;
    for (int micro = 0; micro < tc.grad_accum; ++micro) {
      arena.reset();
      data.sample(B, data_rng, batch);
      loss_sum += policy.forward_loss(ctx, batch);
      ctrl_sum += policy.last_controller_loss();
      chunk_sum += policy.last_chunk_loss();
      policy.backward(ctx, 1.0f / float(tc.grad_accum));
    }
    loss = float(loss_sum / tc.grad_accum);
    const double gnorm = std::sqrt(STRATA_OP_VALUE(Device::cpu, sum_squares, ps.flat_grad(), P));
    if (!std::isfinite(loss) || !std::isfinite(gnorm)) {
      // As the language trainer: skipped, no update; too many in a row stop the run.
      ++nonfinite_in_row;
      metrics.write({{"step", step}, {"skipped_nonfinite", nonfinite_in_row}, {"loss", loss}, {"grad_norm", gnorm}});
      if (nonfinite_in_row >= tc.max_nonfinite_steps)
        throw Error(fmt::format("training diverged: {} steps in a row had a non-finite loss or gradient norm after step {} "
                                "(train.max_nonfinite_steps={}); lower optim.lr or check the episodes",
                                nonfinite_in_row, step, tc.max_nonfinite_steps));
      if (pending_signal() == 0) continue;
      res.last_checkpoint = save_in_run_dir(res.run_dir, make_checkpoint(), tc.keep_checkpoints);
      res.interrupted = true;
      break;
    }
    nonfinite_in_row = 0;
    const float scale = (cfg.optim.clip > 0 && gnorm > cfg.optim.clip) ? float(cfg.optim.clip / gnorm) : 1.0f;
    STRATA_OP(Device::cpu, adamw_update, ps.flat(), ps.flat_grad(), adam_m.data(), adam_v.data(), decay.data(), P, lr,
              cfg.optim.beta1, cfg.optim.beta2, cfg.optim.eps, cfg.optim.weight_decay, step + 1, scale);
    ++step;
    ++steps_this_run;
    ticks_seen += B * W * tc.grad_accum;
    ticks_window += B * W * tc.grad_accum;

    const auto now = std::chrono::steady_clock::now();
    const double win = std::chrono::duration<double>(now - t_window).count();
    const double tps = win > 0 ? double(ticks_window) / win : 0;
    if (step % tc.log_every == 0 || step == tc.steps) {
      metrics.write({{"step", step}, {"loss", loss}, {"controller_loss", ctrl_sum / tc.grad_accum},
                     {"chunk_loss", chunk_sum / tc.grad_accum}, {"lr", lr}, {"grad_norm", gnorm},
                     {"ticks_per_s", tps}, {"ticks", ticks_seen}});
      tb.add_scalar("train/loss", step, loss);
      tb.add_scalar("train/controller_loss", step, float(ctrl_sum / tc.grad_accum));
      tb.add_scalar("train/chunk_loss", step, float(chunk_sum / tc.grad_accum));
      tb.add_scalar("train/lr", step, lr);
      tb.add_scalar("train/grad_norm", step, float(gnorm));
      res.tokens_per_s = tps;
      t_window = now;
      ticks_window = 0;
    }
    if (!opts.quiet) progress.update(step, loss, lr, res.tokens_per_s);
    if ((tc.eval_every > 0 && step % tc.eval_every == 0) || step == tc.steps) {
      res.val_loss = evaluate();
      metrics.write({{"step", step}, {"val_loss", res.val_loss}});
      tb.add_scalar("val/loss", step, res.val_loss);
      tb.flush();
      if (!opts.quiet) progress.message(fmt::format("step {} val_loss {:.4f} (train {:.4f})", step, res.val_loss, loss));
    }
    const bool stop_now = pending_signal() != 0 || (opts.stop_after >= 0 && steps_this_run >= opts.stop_after);
    if ((tc.save_every > 0 && step % tc.save_every == 0) || step == tc.steps || stop_now)
      res.last_checkpoint = save_in_run_dir(res.run_dir, make_checkpoint(), tc.keep_checkpoints);
    if (stop_now) {
      res.interrupted = pending_signal() != 0;
      if (!opts.quiet)
        progress.message(fmt::format("{} at step {}: saved {}", res.interrupted ? "interrupted" : "stopping", step,
                                     res.last_checkpoint));
      break;
    }
  }
  progress.finish();
  if (step == tc.steps) tb.add_hparams_session_end(HParamsStatus::success);
  tb.flush();
  res.step = step;
  res.train_loss = loss;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return res;
}

LoadedRobot load_robot(const std::string& checkpoint_path) {
  Checkpoint ck = load_checkpoint(checkpoint_path);
  LoadedRobot r;
  r.config = parse_config(ck.config_yaml, checkpoint_path + ":/config");
  if (!r.config.robot.enabled())
    throw InputError(fmt::format("checkpoint '{}' is not a robot policy (its config has no robot section)", checkpoint_path));
  if (!ck.norm_stats) throw InputError(fmt::format("checkpoint '{}' has no /norm_stats: not a robot policy", checkpoint_path));
  r.stats = *ck.norm_stats;
  r.policy = std::make_unique<MultiRatePolicy>(r.config.model, r.config.robot, obs_dim_of(r.stats),
                                               int64_t(r.stats.actions.mean.size()), MultiRatePolicy::Uninitialised{});
  restore_into(r.policy->params(), r.policy->params().flat(), ck.params, "parameter", checkpoint_path);
  return r;
}

}  // namespace strata
