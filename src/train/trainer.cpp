#include "train/trainer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>

#include "core/device.h"
#include "core/error.h"
#include "kernels/cpu/optim.h"
#include "kernels/dispatch.h"
#include "layers/linear.h"
#include "models/model.h"
#include "train/checkpoint.h"
#include "train/config_hparams.h"
#include "train/config_load.h"
#include "train/dataset.h"
#include "train/synthetic_data.h"
#include "train/task_eval.h"
#include "train/distributed.h"
#include "train/distributed_nccl.h"
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

// Seconds since the epoch: comparable between the processes of one node (and, as far as the clocks
// are synchronised, between nodes), unlike steady_clock.
double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::string run_dir_for(const Config& cfg) {
  if (!cfg.train.run_dir.empty()) return cfg.train.run_dir;
  std::string stem = cfg.source_path.empty() ? "run" : fs::path(cfg.source_path).stem().string();
  return (fs::path("runs") / stem).string();
}

namespace {

// The language-model run. With a world of W > 1 processes (train/distributed.h) every rank runs
// this: each trains on its B / W rows of every global batch, the gradients are averaged in buckets
// overlapped with backward, and only rank 0 reads and writes the run directory (checkpoints,
// metrics, TensorBoard, progress) while the others wait for it at a barrier. With W == 1 every
// distributed step below is skipped and the run is the single-process one, bit for bit.
TrainResult train_text(const Config& cfg, const std::string& config_yaml, const TrainOptions& opts, Communicator& comm) {
  TrainResult res;
  res.run_dir = run_dir_for(cfg);
  const TrainConfig& tc = cfg.train;
  const int W = comm.size(), rank = comm.rank();
  const bool lead = rank == 0;
  const bool quiet = opts.quiet || !lead;
  res.rank = rank;
  res.world_size = W;
  // W > 1 on GPUs: one GPU per rank, the gradient sums through NCCL (the rest stays on `comm`).
  std::unique_ptr<Communicator> nccl;
  if (W > 1) {
    comm.set_timeout(tc.dist_timeout_s);
    if (tc.device == "cuda" && !nccl_built())
      throw AgreedInputError(fmt::format("train.device: cuda with {} processes needs NCCL, and this strata binary was "
                                         "built without it; use train.device=cpu or a CUDA build with NCCL", W));
    if (tc.device == "cuda") select_local_gpu(comm);  // before any CUDA work
    if (tc.batch % W != 0)
      throw AgreedInputError(fmt::format("train.batch={} is the global batch, split evenly over the {} processes, and is not "
                                         "divisible by {}; use a multiple of {} (each rank trains on train.batch / {} rows)",
                                         tc.batch, W, W, W, W));
  }
  // Refused up front, before any file is touched: "train.device: device cuda: this binary was built
  // without CUDA" or "...: no CUDA device: <reason>".
  const Device device = tc.device == "cuda" ? Device::cuda : Device::cpu;
  require_device(device, "train.device");
  const std::vector<HParam> hparams = hparams_of(cfg, opts.hparams.empty() ? default_hparam_keys() : opts.hparams);
  const std::unique_ptr<Dataset> data_ptr = make_dataset(cfg);
  const Dataset& data = *data_ptr;
  data.require_windows(tc.seq);  // both splits, before any work that a failed first eval would waste
  // Synthetic tasks: the accuracy at train.seq, then at each further length of data.eval_seqs.
  const auto* synthetic = dynamic_cast<const SyntheticData*>(&data);
  std::vector<int64_t> acc_seqs;
  if (synthetic) {
    acc_seqs.push_back(tc.seq);
    for (int64_t L : parse_eval_seqs(cfg.data.eval_seqs))
      if (L != tc.seq) acc_seqs.push_back(L);
  }
  Model model(cfg.model, tc.seed);
  ParamStore& ps = model.params();
  const int64_t P = ps.numel();
  // ZeRO-1 (W > 1, train.dist_zero1): this rank keeps the AdamW moments of its shard of the flat
  // buffer only and updates that shard; the others' come by the all-gather after the step. Rank 0
  // still reads and writes the full moments (checkpoints keep one format at every world size), and
  // its shard starts at 0, so its full host buffer is cut to the shard by shrinking it.
  const bool zero1 = W > 1 && tc.dist_zero1;
  const ShardRange shard = zero1 ? shard_range(P, W, rank) : ShardRange{0, P};
  const std::vector<int64_t> shard_sizes = zero1 ? shard_counts(P, W) : std::vector<int64_t>{};
  // Built, initialised and (on resume) restored on the host; moved to the device below.
  const size_t host_moments = size_t(zero1 && !lead ? shard.size() : P);
  std::vector<float> adam_m(host_moments, 0.0f), adam_v(host_moments, 0.0f);
  std::vector<uint8_t> decay = ps.decay_mask();
  // The data stream has its own seed so that changing the model init does not change the batches.
  Rng data_rng(tc.seed ^ 0xda7a5eedULL);
  int64_t step = 0, tokens_seen = 0;

  // Rank 0 owns the run directory: the lock, the checkpoint to resume, config.yaml.
  std::optional<RunDirLock> lock;
  std::string why;
  std::optional<std::string> existing;
  auto open_run_dir = [&] {
    fs::create_directories(res.run_dir);
    lock.emplace(res.run_dir);  // before anything in the directory is read, pruned or written
    existing = newest_good_checkpoint(res.run_dir, &why);
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
      if (!why.empty() && !quiet) fmt::print(stderr, "note: skipped unusable checkpoints: {}\n", why);
      if (!quiet) fmt::print(stderr, "resuming from {} at step {}\n", *existing, step);
    } else if (existing) {
      throw InputError(fmt::format("run directory '{}' already has checkpoints ({}); pass --resume to continue it, "
                                   "or set train.run_dir to a new directory (nothing was overwritten)",
                                   res.run_dir, *existing));
    }
    { std::ofstream(fs::path(res.run_dir) / "config.yaml") << config_yaml; }
  };
  if (W == 1) {
    open_run_dir();
  } else {
    // Rank 0 opens (and, on resume, reads) the run directory; its refusal, if any, is every rank's,
    // and its state (a fresh init or the checkpoint) is broadcast, so all ranks start identical.
    std::string err;
    int64_t err_kind = 0;  // 1: InputError, 2: other
    if (lead) {
      try {
        open_run_dir();
      } catch (const InputError& e) {
        err = e.what(), err_kind = 1;
      } catch (const std::exception& e) {
        err = e.what(), err_kind = 2;
      }
    }
    int64_t head[2] = {int64_t(err.size()), err_kind};
    comm.broadcast(head, sizeof head, 0, "the start of the run (rank 0 opening the run directory)");
    err.resize(size_t(head[0]));
    comm.broadcast(err.data(), err.size(), 0, "the start of the run");
    if (head[1] == 1) throw AgreedInputError(err);
    if (head[1] == 2) throw AgreedError(err);
    comm.broadcast(ps.flat(), sizeof(float) * size_t(P), 0, "the initial parameters");
    if (zero1) {
      comm.scatter(adam_m.data(), shard_sizes, 0, "the initial optimizer state's shards");
      comm.scatter(adam_v.data(), shard_sizes, 0, "the initial optimizer state's shards");
    } else {
      comm.broadcast(adam_m.data(), sizeof(float) * size_t(P), 0, "the initial optimizer state");
      comm.broadcast(adam_v.data(), sizeof(float) * size_t(P), 0, "the initial optimizer state");
    }
    uint64_t st[4] = {uint64_t(step), data_rng.seed, data_rng.counter, uint64_t(tokens_seen)};
    comm.broadcast(st, sizeof st, 0, "the initial training state");
    step = int64_t(st[0]);
    data_rng = Rng(st[1], st[2]);
    tokens_seen = int64_t(st[3]);
  }

  // The optimizer works where the parameters live: one flat buffer each on `device`.
  ps.to_device(device);
  // bf16: the linear layers read a bf16 shadow of the (restored) fp32 weights, refreshed after every
  // optimizer step. Checkpoints hold only the fp32 values, so resume is bit-exact in both modes.
  const Precision precision = tc.precision == "bf16" ? Precision::bf16 : Precision::fp32;
  if (precision == Precision::bf16) enable_bf16_shadow(ps);
  // This rank's shard of the moments and of the decay mask (everything, without ZeRO-1); rank 0's
  // host buffers start with its shard.
  DeviceArray<float> opt_m = DeviceArray<float>::from_host(adam_m.data(), size_t(shard.size()), device);
  DeviceArray<float> opt_v = DeviceArray<float>::from_host(adam_v.data(), size_t(shard.size()), device);
  DeviceArray<uint8_t> opt_decay = DeviceArray<uint8_t>::from_host(decay.data() + shard.lo, size_t(shard.size()), device);
  std::vector<float>().swap(adam_m);  // the host staging copies are not needed any more
  std::vector<float>().swap(adam_v);
  std::vector<uint8_t>().swap(decay);

  std::optional<MetricsWriter> metrics;
  std::optional<TensorBoardWriter> tb;
  if (lead) {
    metrics.emplace((fs::path(res.run_dir) / "metrics.jsonl").string(), /*append=*/opts.resume);
    tb.emplace(res.run_dir);
    std::vector<std::string> tags = {"train/loss", "val/loss"};
    if (synthetic) tags.push_back("val/acc");
    tb->add_hparams_experiment(hparams, tags);
    tb->add_hparams_session_start(hparams, opts.hparams_group);
  }
  Arena arena(device);
  Ctx ctx{device, &arena, true};
  ctx.precision = precision;
  ctx.params = &ps;
  const int64_t B = tc.batch, T = tc.seq;
  const int64_t B_rank = B / W;  // this rank's rows of every global batch
  std::vector<int32_t> ids(size_t(B * T)), tgt(size_t(B * T));
  std::optional<GradReducer> reducer;
  if (W > 1 && device == Device::cuda) {
    nccl = make_nccl_communicator(comm);
    nccl->set_timeout(tc.dist_timeout_s);
  }
  if (W > 1) reducer.emplace(nccl ? *nccl : comm, device, P, std::max<int64_t>(1, int64_t(double(tc.dist_bucket_mb) * (1 << 20) / 4)), tc.dist_overlap);
  bool stop_agreed = false;  // W > 1: some rank had a signal at the last step's agreement
  auto stop_signal = [&] { return W == 1 ? pending_signal() != 0 : stop_agreed; };

  // ZeRO-1: the full moment on rank 0 (empty elsewhere), gathered from every rank's shard.
  auto gather_moment = [&](const DeviceArray<float>& part) {
    std::vector<float> full = part.to_host();
    if (lead) full.resize(size_t(P));  // rank 0's shard is the prefix
    comm.gather(full.data(), shard_sizes, 0, "the optimizer state's gather for the checkpoint");
    if (!lead) std::vector<float>().swap(full);
    return full;
  };
  // full_m, full_v: ZeRO-1's gathered moments (otherwise empty: this rank holds them all).
  auto make_checkpoint = [&](const std::vector<float>& full_m, const std::vector<float>& full_v) {
    Checkpoint ck;
    ck.config_yaml = config_yaml;
    // On cpu the buffers are host memory already; on cuda they are copied down first.
    const bool host = device == Device::cpu;
    std::vector<float> hp, hm, hv;
    if (!host) hp = ps.host_flat();
    if (!host && !zero1) hm = opt_m.to_host(), hv = opt_v.to_host();
    ck.params = views_of(ps, host ? ps.flat() : hp.data());
    ck.adam_m = views_of(ps, zero1 ? full_m.data() : host ? opt_m.data() : hm.data());
    ck.adam_v = views_of(ps, zero1 ? full_v.data() : host ? opt_v.data() : hv.data());
    ck.state.step = step;
    ck.state.rng_seed = data_rng.seed;
    ck.state.rng_counter = data_rng.counter;
    ck.state.tokens_seen = tokens_seen;
    return ck;
  };
  // Rank 0 writes; the others wait until the file is committed, so none runs ahead or exits first.
  auto save = [&] {
    std::vector<float> full_m, full_v;
    if (zero1) full_m = gather_moment(opt_m), full_v = gather_moment(opt_v);
    if (lead) res.last_checkpoint = save_in_run_dir(res.run_dir, make_checkpoint(full_m, full_v), tc.keep_checkpoints);
    if (W > 1) comm.barrier("the checkpoint save on rank 0");
  };
  auto evaluate = [&]() {
    double sum = 0;
    for (int i = 0; i < tc.eval_batches; ++i) {
      if (i % W != rank) continue;  // the ranks share the batches
      arena.reset();
      data.val_batch(ids.data(), tgt.data(), B, T, i, tc.eval_batches);
      sum += model.eval_loss(ctx, ids.data(), tgt.data(), B, T);
    }
    if (W > 1) comm.sum(&sum, 1, "the validation loss");
    return float(sum / tc.eval_batches);
  };

  if (!quiet)
    fmt::print(stderr, "training {} ({} layers '{}', {:.2f}M params, {}) on {} -> {}\n", cfg.source_path,
               model.layers().size(), model.layer_pattern(), double(P) / 1e6, tc.precision, data.describe(), res.run_dir);
  if (!quiet && W > 1)
    fmt::print(stderr, "data parallel: {} processes over {}, {} rows each of every global batch of {}, {} gradient "
               "buckets{}, {}\n", W, nccl ? nccl->backend() : comm.backend(), B_rank, B, reducer->bucket_count(),
               tc.dist_overlap ? " overlapped with backward" : "",
               zero1 ? fmt::format("ZeRO-1: AdamW moments sharded, {:.2f} MiB of them per rank (of {:.2f} MiB)",
                                   2.0 * 4 * double(shard.size()) / (1 << 20), 2.0 * 4 * double(P) / (1 << 20))
                     : fmt::format("AdamW moments {:.2f} MiB on every rank", 2.0 * 4 * double(P) / (1 << 20)));
  SignalGuard signals;
  Progress progress(tc.steps, step, tc.log_every);
  auto t_start = std::chrono::steady_clock::now();
  auto t_window = t_start;
  int64_t tokens_window = 0, steps_this_run = 0, steps_window = 0;
  double comm_other_s = 0;  // W > 1: the step's small agreement (loss, stop flag) in this window
  double skew_s = 0;        // W > 1: waiting for slower ranks to finish backward, in this window
  double gather_s = 0;      // ZeRO-1: the parameters' all-gather after the update, in this window
  std::vector<double> agree;
  float loss = 0;
  int nonfinite_in_row = 0;
  // The synthetic tasks' evaluation: loss and accuracy at every length, written as it goes; returns
  // the loss at train.seq, the same mean over the tested positions as evaluate() below.
  auto evaluate_accuracy = [&]() {
    auto evals = evaluate_task(model, ctx, *synthetic, acc_seqs, B, T, tc.eval_batches, comm);
    nlohmann::json rec = {{"step", step}};
    std::string line;
    for (const LengthEval& e : evals) {
      const std::string sfx = eval_suffix(e.seq, T);
      rec["val_loss" + sfx] = e.loss;
      rec["val_acc" + sfx] = e.acc.token();
      if (synthetic->has_sequence_accuracy()) rec["val_seq_acc" + sfx] = e.acc.sequence();
      if (tb) {
        tb->add_scalar("val/loss" + sfx, step, float(e.loss));
        tb->add_scalar("val/acc" + sfx, step, float(e.acc.token()));
        if (synthetic->has_sequence_accuracy()) tb->add_scalar("val/seq_acc" + sfx, step, float(e.acc.sequence()));
      }
      line += fmt::format(" acc{} {:.3f}", sfx, e.acc.token());
    }
    if (metrics) metrics->write(rec);
    if (!quiet) progress.message(fmt::format("step {} val_loss {:.4f}{} (train {:.4f})", step, evals[0].loss, line, loss));
    if (tb) tb->flush();
    res.val_acc = float(evals[0].acc.token());
    return float(evals[0].loss);
  };
  while (step < tc.steps) {
    float lr = learning_rate(cfg.optim, step, tc.steps);
    ps.zero_grad();
    double loss_sum = 0, aux_sum = 0;
    for (int micro = 0; micro < tc.grad_accum; ++micro) {
      arena.reset();
      if (W == 1) data.train_batch(ids.data(), tgt.data(), B, T, data_rng);
      else data.train_batch_rows(ids.data(), tgt.data(), B, T, data_rng, rank * B_rank, B_rank);
      loss_sum += model.forward_loss(ctx, ids.data(), tgt.data(), B_rank, T);
      aux_sum += model.aux_loss();
      // The last micro-batch's backward finishes the step's gradients: its buckets go out as it goes.
      if (reducer && micro == tc.grad_accum - 1) {
        reducer->begin(ps.flat_grad());
        ctx.grads_final = &*reducer;
      }
      model.backward(ctx, 1.0f / float(tc.grad_accum));
      ctx.grads_final = nullptr;
    }
    if (W > 1) {
      const double arrived = wall_seconds();  // at the end of backward, for the skew below
      reducer->finish();
      // Every rank's loss is the mean over its equal share, so the global loss is the ranks' mean.
      // The stop flag rides along: the ranks agree every step whether any of them had a signal.
      // So do the times the ranks finished backward (slot 3 + r): the last one's minus ours is the
      // part of our wait for the sums that was waiting for a slower rank, not communication
      // (wall clocks: exact on one node, as good as their synchronisation across nodes).
      auto t0 = std::chrono::steady_clock::now();
      agree.assign(size_t(3 + W), 0.0);
      agree[0] = loss_sum, agree[1] = aux_sum, agree[2] = pending_signal() != 0 ? 1.0 : 0.0;
      agree[size_t(3 + rank)] = arrived;
      comm.sum(agree.data(), 3 + W, "the step's loss and stop-flag agreement");
      loss_sum = agree[0] / W, aux_sum = agree[1] / W, stop_agreed = agree[2] > 0;
      comm_other_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      skew_s += *std::max_element(agree.begin() + 3, agree.end()) - arrived;
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
      if (!lead) {
      } else if (opts.quiet) fmt::print(stderr, "warning: {}\n", note);
      else progress.message("warning: " + note);
      if (metrics) metrics->write({{"step", step}, {"skipped_nonfinite", nonfinite_in_row}, {"loss", loss}, {"grad_norm", gnorm}});
      if (nonfinite_in_row >= tc.max_nonfinite_steps) {
        progress.finish();
        if (tb) tb->add_hparams_session_end(HParamsStatus::failure);
        std::string kept = !res.last_checkpoint.empty() ? res.last_checkpoint : existing ? *existing : "";
        std::string msg = (fmt::format("training diverged: {} steps in a row had a non-finite loss or gradient norm after step {} "
                                "(train.max_nonfinite_steps={}); stopping without saving. {}; lower optim.lr, check the "
                                "data, or raise train.max_nonfinite_steps",
                                nonfinite_in_row, step, tc.max_nonfinite_steps,
                                kept.empty() ? "No checkpoint was saved in this run yet"
                                             : fmt::format("The last good checkpoint is '{}' (resume with --resume)", kept)));
        if (W > 1) throw AgreedError(msg);  // every rank saw the same averaged loss and gradients
        throw Error(msg);
      }
      if (!stop_signal()) continue;
      // Interrupted while skipping: the state is still the last good one, saved as any interruption.
      save();
      res.interrupted = true;
      break;
    }
    nonfinite_in_row = 0;
    float scale = (cfg.optim.clip > 0 && gnorm > cfg.optim.clip) ? float(cfg.optim.clip / gnorm) : 1.0f;
    // This rank's shard of the update (all of it without ZeRO-1; AdamW is elementwise, so a shard's
    // values are those of the whole update), then ZeRO-1 brings every rank's shard to every rank.
    STRATA_OP(device, adamw_update, ps.flat() + shard.lo, ps.flat_grad() + shard.lo, opt_m.data(), opt_v.data(),
              opt_decay.data(), shard.size(), lr, cfg.optim.beta1, cfg.optim.beta2, cfg.optim.eps,
              cfg.optim.weight_decay, step + 1, scale);
    if (zero1) {
      auto t0 = std::chrono::steady_clock::now();
      (nccl ? *nccl : comm).all_gather(ps.flat(), shard_sizes, "the parameters' all-gather (ZeRO-1)");
      gather_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    refresh_bf16_shadow(ps);
    ++step;
    ++steps_this_run;
    tokens_seen += B * T * tc.grad_accum;
    tokens_window += B * T * tc.grad_accum;
    ++steps_window;

    auto now = std::chrono::steady_clock::now();
    double win = std::chrono::duration<double>(now - t_window).count();
    double tps = win > 0 ? double(tokens_window) / win : 0;
    if (step % tc.log_every == 0 || step == tc.steps) {
      nlohmann::json rec = {{"step", step}, {"loss", loss}, {"lr", lr}, {"grad_norm", gnorm}, {"aux_loss", aux_sum / tc.grad_accum},
                            {"tokens_per_s", tps}, {"tokens", tokens_seen}};
      if (W > 1) {
        // Per step, averaged over the window (rank 0's view): the whole step, the gradient sums'
        // time inside backward (starting and polling buckets) and after it (what was not hidden,
        // and any wait for a slower rank, comm_skew_ms), and the small per-step agreement.
        const auto& st = reducer->stats();
        const double n = double(std::max<int64_t>(steps_window, 1));
        rec["dist_ranks"] = W;
        rec["step_ms"] = 1e3 * win / n;
        rec["comm_in_backward_ms"] = 1e3 * st.in_backward_s / n;
        rec["comm_wait_ms"] = 1e3 * st.wait_s / n;
        rec["comm_cpu_ms"] = 1e3 * (st.in_backward_cpu_s + st.wait_cpu_s) / n;  // of the two above
        rec["comm_agree_ms"] = 1e3 * comm_other_s / n;
        rec["comm_skew_ms"] = 1e3 * skew_s / n;  // included in comm_wait_ms
        rec["buckets_started_in_backward"] = double(st.started_in_backward) / n;
        if (zero1) rec["comm_allgather_ms"] = 1e3 * gather_s / n;
        reducer->reset_stats();
        comm_other_s = 0;
        skew_s = 0;
        gather_s = 0;
      }
      if (metrics) metrics->write(rec);
      if (tb) {
        tb->add_scalar("train/loss", step, loss);
        tb->add_scalar("train/lr", step, lr);
        tb->add_scalar("train/grad_norm", step, float(gnorm));
        tb->add_scalar("train/tokens_per_s", step, float(tps));
      }
      res.tokens_per_s = tps;
      t_window = now;
      tokens_window = 0;
      steps_window = 0;
    }
    if (!quiet) progress.update(step, loss, lr, res.tokens_per_s);
    const bool eval_now = (tc.eval_every > 0 && step % tc.eval_every == 0) || step == tc.steps;
    if (eval_now && synthetic) {
      res.val_loss = evaluate_accuracy();
    } else if (eval_now) {
      res.val_loss = evaluate();
      if (metrics) metrics->write({{"step", step}, {"val_loss", res.val_loss}});
      if (tb) {
        tb->add_scalar("val/loss", step, res.val_loss);
        tb->flush();
      }
      if (!quiet) progress.message(fmt::format("step {} val_loss {:.4f} (train {:.4f})", step, res.val_loss, loss));
    }
    bool stop_now = stop_signal() || (opts.stop_after >= 0 && steps_this_run >= opts.stop_after);
    if ((tc.save_every > 0 && step % tc.save_every == 0) || step == tc.steps || stop_now) save();
    if (stop_now) {
      res.interrupted = stop_signal();
      if (!quiet)
        progress.message(fmt::format("{} at step {}: saved {}", res.interrupted ? "interrupted" : "stopping", step,
                                     res.last_checkpoint));
      break;
    }
  }
  progress.finish();
  if (tb) {
    if (step == tc.steps) tb->add_hparams_session_end(HParamsStatus::success);
    tb->flush();
  }
  res.step = step;
  res.train_loss = loss;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return res;
}

}  // namespace

TrainResult train(const Config& cfg, const std::string& config_yaml, const TrainOptions& opts) {
  Communicator& comm = world();  // refuses a multi-process launch of a binary without MPI
  if (comm.size() == 1) {
    if (cfg.robot.enabled()) return train_robot(cfg, config_yaml, opts);  // episodes, not text
    return train_text(cfg, config_yaml, opts, comm);
  }
  if (cfg.robot.enabled())
    throw InputError(fmt::format("this is rank {} of {}: data-parallel training covers the language models; train a robot "
                                 "policy (robot: section) in one process",
                                 comm.rank(), comm.size()));
  try {
    return train_text(cfg, config_yaml, opts, comm);
  } catch (const AgreedInputError&) {
    // Every rank threw it at the same point: rank 0 reports it and all exit with the usual code
    // (2 for a refused input, 1 otherwise) rather than N copies of the same message.
    if (comm.rank() == 0) throw;
    std::exit(2);
  } catch (const AgreedError&) {
    if (comm.rank() == 0) throw;
    std::exit(1);
  } catch (const std::exception& e) {
    // One rank's own failure (an I/O error on rank 0, a bad file): the others would wait for it in
    // their next collective, so the whole job ends now, with this message.
    comm.abort_job(fmt::format("error: {}", e.what()));
  }
  return {};  // not reached: abort_job ends the process
}

}  // namespace strata
