#include "train/trainer.h"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/device.h"
#include "core/error.h"
#include "kernels/cpu/optim.h"
#include "kernels/dispatch.h"
#include "layers/linear.h"
#include "models/model.h"
#include "train/checkpoint.h"
#include "train/config_hparams.h"
#include "train/config_load.h"
#include "train/data.h"
#include "train/metrics.h"
#include "train/progress.h"
#include "train/run_lock.h"
#include "train/schedule.h"
#include "train/robot_trainer.h"
#include "train/tensorboard.h"
#include "train/train_common.h"

namespace fs = std::filesystem;

namespace strata {

namespace {

// The model section alone, as YAML: two checkpoints are compatible when these are equal.
std::string model_yaml(const Config& c) {
  Config m;
  m.model = c.model;
  return to_yaml(m);
}

}  // namespace

std::string run_dir_for(const Config& cfg) {
  if (!cfg.train.run_dir.empty()) return cfg.train.run_dir;
  std::string stem = cfg.source_path.empty() ? "run" : fs::path(cfg.source_path).stem().string();
  return (fs::path("runs") / stem).string();
}

TrainResult train(const Config& cfg, const std::string& config_yaml, const TrainOptions& opts) {
  if (cfg.robot.enabled()) return train_robot(cfg, config_yaml, opts);  // episodes, not text
  TrainResult res;
  res.run_dir = run_dir_for(cfg);
  const TrainConfig& tc = cfg.train;
  // Refused up front, before any file is touched: "train.device: device cuda: this binary was built
  // without CUDA" or "...: no CUDA device: <reason>".
  const Device device = tc.device == "cuda" ? Device::cuda : Device::cpu;
  require_device(device, "train.device");
  const std::vector<HParam> hparams = hparams_of(cfg, opts.hparams.empty() ? default_hparam_keys() : opts.hparams);
  TextData data(cfg.data.path, cfg.data.val_fraction);
  data.require_windows(tc.seq);  // both splits, before any work that a failed first eval would waste
  Model model(cfg.model, tc.seed);
  ParamStore& ps = model.params();
  const int64_t P = ps.numel();
  // Built, initialised and (on resume) restored on the host; moved to the device below.
  std::vector<float> adam_m(size_t(P), 0.0f), adam_v(size_t(P), 0.0f);
  std::vector<uint8_t> decay = ps.decay_mask();
  // The data stream has its own seed so that changing the model init does not change the batches.
  Rng data_rng(tc.seed ^ 0xda7a5eedULL);
  int64_t step = 0, tokens_seen = 0;

  fs::create_directories(res.run_dir);
  RunDirLock lock(res.run_dir);  // before anything in the directory is read, pruned or written
  std::string why;
  auto existing = newest_good_checkpoint(res.run_dir, &why);
  if (opts.resume) {
    if (!existing) throw InputError(fmt::format("--resume: no usable checkpoint in '{}'{}", res.run_dir, why.empty() ? "" : " (" + why + ")"));
    Checkpoint ck = load_checkpoint(*existing);
    Config saved = parse_config(ck.config_yaml, *existing + ":/config");
    if (model_yaml(saved) != model_yaml(cfg))
      throw InputError(fmt::format("checkpoint '{}' was written for a different model config; refusing to resume.\n"
                                   "checkpoint model:\n{}\ncurrent model:\n{}",
                                   *existing, model_yaml(saved), model_yaml(cfg)));
    restore_into(ps, ps.flat(), ck.params, "parameter", *existing);
    restore_into(ps, adam_m.data(), ck.adam_m, "optimizer m", *existing);
    restore_into(ps, adam_v.data(), ck.adam_v, "optimizer v", *existing);
    step = ck.state.step;
    data_rng = Rng(ck.state.rng_seed, ck.state.rng_counter);
    tokens_seen = ck.state.tokens_seen;
    if (!why.empty() && !opts.quiet) fmt::print(stderr, "note: skipped unusable checkpoints: {}\n", why);
    if (!opts.quiet) fmt::print(stderr, "resuming from {} at step {}\n", *existing, step);
  } else if (existing) {
    throw InputError(fmt::format("run directory '{}' already has checkpoints ({}); pass --resume to continue it, "
                                 "or set train.run_dir to a new directory (nothing was overwritten)",
                                 res.run_dir, *existing));
  }
  { std::ofstream(fs::path(res.run_dir) / "config.yaml") << config_yaml; }

  // The optimizer works where the parameters live: one flat buffer each on `device`.
  ps.to_device(device);
  // bf16: the linear layers read a bf16 shadow of the (restored) fp32 weights, refreshed after every
  // optimizer step. Checkpoints hold only the fp32 values, so resume is bit-exact in both modes.
  const Precision precision = tc.precision == "bf16" ? Precision::bf16 : Precision::fp32;
  if (precision == Precision::bf16) enable_bf16_shadow(ps);
  DeviceArray<float> opt_m = DeviceArray<float>::from_host(adam_m.data(), adam_m.size(), device);
  DeviceArray<float> opt_v = DeviceArray<float>::from_host(adam_v.data(), adam_v.size(), device);
  DeviceArray<uint8_t> opt_decay = DeviceArray<uint8_t>::from_host(decay.data(), decay.size(), device);
  std::vector<float>().swap(adam_m);  // the host staging copies are not needed any more
  std::vector<float>().swap(adam_v);

  MetricsWriter metrics((fs::path(res.run_dir) / "metrics.jsonl").string(), /*append=*/opts.resume);
  TensorBoardWriter tb(res.run_dir);
  tb.add_hparams_experiment(hparams, {"train/loss", "val/loss"});
  tb.add_hparams_session_start(hparams, opts.hparams_group);
  Arena arena(device);
  Ctx ctx{device, &arena, true};
  ctx.precision = precision;
  ctx.params = &ps;
  const int64_t B = tc.batch, T = tc.seq;
  std::vector<int32_t> ids(size_t(B * T)), tgt(size_t(B * T));

  auto make_checkpoint = [&]() {
    Checkpoint ck;
    ck.config_yaml = config_yaml;
    // On cpu the buffers are host memory already; on cuda they are copied down first.
    const bool host = device == Device::cpu;
    std::vector<float> hp, hm, hv;
    if (!host) hp = ps.host_flat(), hm = opt_m.to_host(), hv = opt_v.to_host();
    ck.params = views_of(ps, host ? ps.flat() : hp.data());
    ck.adam_m = views_of(ps, host ? opt_m.data() : hm.data());
    ck.adam_v = views_of(ps, host ? opt_v.data() : hv.data());
    ck.state.step = step;
    ck.state.rng_seed = data_rng.seed;
    ck.state.rng_counter = data_rng.counter;
    ck.state.tokens_seen = tokens_seen;
    return ck;
  };
  auto evaluate = [&]() {
    double sum = 0;
    for (int i = 0; i < tc.eval_batches; ++i) {
      arena.reset();
      data.val_batch(ids.data(), tgt.data(), B, T, i, tc.eval_batches);
      sum += model.eval_loss(ctx, ids.data(), tgt.data(), B, T);
    }
    return float(sum / tc.eval_batches);
  };

  if (!opts.quiet)
    fmt::print(stderr, "training {} ({} layers '{}', {:.2f}M params, {}) on '{}' ({} train / {} val bytes) -> {}\n",
               cfg.source_path, model.layers().size(), model.layer_pattern(), double(P) / 1e6, tc.precision,
               cfg.data.path, data.train_size(), data.val_size(), res.run_dir);
  SignalGuard signals;
  Progress progress(tc.steps, step, tc.log_every);
  auto t_start = std::chrono::steady_clock::now();
  auto t_window = t_start;
  int64_t tokens_window = 0, steps_this_run = 0;
  float loss = 0;
  int nonfinite_in_row = 0;
  while (step < tc.steps) {
    float lr = learning_rate(cfg.optim, step, tc.steps);
    ps.zero_grad();
    double loss_sum = 0, aux_sum = 0;
    for (int micro = 0; micro < tc.grad_accum; ++micro) {
      arena.reset();
      data.train_batch(ids.data(), tgt.data(), B, T, data_rng);
      loss_sum += model.forward_loss(ctx, ids.data(), tgt.data(), B, T);
      aux_sum += model.aux_loss();
      model.backward(ctx, 1.0f / float(tc.grad_accum));
    }
    loss = float(loss_sum / tc.grad_accum);
    double gnorm = std::sqrt(STRATA_OP_VALUE(device, sum_squares, ps.flat_grad(), P));
    // A non-finite loss or gradient norm (an overflow, a bad batch) would put NaN into every weight
    // and both AdamW moments. The step is skipped instead: no update, so parameters, moments and the
    // step count stay the last good ones (only the data stream moves on, to the next batch). Many in
    // a row means the run has diverged: it stops, and the last good checkpoint is what remains.
    if (!std::isfinite(loss) || !std::isfinite(gnorm)) {
      ++nonfinite_in_row;
      std::string note = fmt::format("step {}: non-finite loss {} / grad norm {}: skipped, no update ({} of "
                                     "train.max_nonfinite_steps={} in a row)",
                                     step + 1, loss, gnorm, nonfinite_in_row, tc.max_nonfinite_steps);
      if (opts.quiet) fmt::print(stderr, "warning: {}\n", note);
      else progress.message("warning: " + note);
      metrics.write({{"step", step}, {"skipped_nonfinite", nonfinite_in_row}, {"loss", loss}, {"grad_norm", gnorm}});
      if (nonfinite_in_row >= tc.max_nonfinite_steps) {
        progress.finish();
        tb.add_hparams_session_end(HParamsStatus::failure);
        std::string kept = !res.last_checkpoint.empty() ? res.last_checkpoint : existing ? *existing : "";
        throw Error(fmt::format("training diverged: {} steps in a row had a non-finite loss or gradient norm after step {} "
                                "(train.max_nonfinite_steps={}); stopping without saving. {}; lower optim.lr, check the "
                                "data, or raise train.max_nonfinite_steps",
                                nonfinite_in_row, step, tc.max_nonfinite_steps,
                                kept.empty() ? "No checkpoint was saved in this run yet"
                                             : fmt::format("The last good checkpoint is '{}' (resume with --resume)", kept)));
      }
      if (pending_signal() == 0) continue;
      // Interrupted while skipping: the state is still the last good one, saved as any interruption.
      res.last_checkpoint = save_in_run_dir(res.run_dir, make_checkpoint(), tc.keep_checkpoints);
      res.interrupted = true;
      break;
    }
    nonfinite_in_row = 0;
    float scale = (cfg.optim.clip > 0 && gnorm > cfg.optim.clip) ? float(cfg.optim.clip / gnorm) : 1.0f;
    STRATA_OP(device, adamw_update, ps.flat(), ps.flat_grad(), opt_m.data(), opt_v.data(), opt_decay.data(), P, lr,
              cfg.optim.beta1, cfg.optim.beta2, cfg.optim.eps, cfg.optim.weight_decay, step + 1, scale);
    refresh_bf16_shadow(ps);
    ++step;
    ++steps_this_run;
    tokens_seen += B * T * tc.grad_accum;
    tokens_window += B * T * tc.grad_accum;

    auto now = std::chrono::steady_clock::now();
    double win = std::chrono::duration<double>(now - t_window).count();
    double tps = win > 0 ? double(tokens_window) / win : 0;
    if (step % tc.log_every == 0 || step == tc.steps) {
      metrics.write({{"step", step}, {"loss", loss}, {"lr", lr}, {"grad_norm", gnorm}, {"aux_loss", aux_sum / tc.grad_accum},
                     {"tokens_per_s", tps}, {"tokens", tokens_seen}});
      tb.add_scalar("train/loss", step, loss);
      tb.add_scalar("train/lr", step, lr);
      tb.add_scalar("train/grad_norm", step, float(gnorm));
      tb.add_scalar("train/tokens_per_s", step, float(tps));
      res.tokens_per_s = tps;
      t_window = now;
      tokens_window = 0;
    }
    if (!opts.quiet) progress.update(step, loss, lr, res.tokens_per_s);
    if ((tc.eval_every > 0 && step % tc.eval_every == 0) || step == tc.steps) {
      res.val_loss = evaluate();
      metrics.write({{"step", step}, {"val_loss", res.val_loss}});
      tb.add_scalar("val/loss", step, res.val_loss);
      tb.flush();
      if (!opts.quiet) progress.message(fmt::format("step {} val_loss {:.4f} (train {:.4f})", step, res.val_loss, loss));
    }
    bool stop_now = pending_signal() != 0 || (opts.stop_after >= 0 && steps_this_run >= opts.stop_after);
    if ((tc.save_every > 0 && step % tc.save_every == 0) || step == tc.steps || stop_now) {
      res.last_checkpoint = save_in_run_dir(res.run_dir, make_checkpoint(), tc.keep_checkpoints);
    }
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

}  // namespace strata
