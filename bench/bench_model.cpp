// Whole-model throughput of strata on one config: training tokens/s and decode tokens/s, printed as
// one JSON line. bench/vs_pytorch.py runs this next to the PyTorch peer (python/torch_ref) and
// prints the ratios; docs/bench.md describes what is measured.
//
//   bench_model CONFIG.yaml [key=value ...] [--batch B] [--seq T] [--train-steps N] [--warmup-steps N]
//               [--decode-tokens N] [--decode-batch B[,B...]] [--decode-warmup N] [--prefill N] [--seed S]
//               [--hbm-gbs G]
//   bench_model CONFIG.yaml train.device=cuda ...   # both measurements on the GPU
//   bench_model CONFIG.yaml --dump DIR   # weights + a batch's loss + decode logits, for
//                                        # `python -m torch_ref.bench CONFIG --check DIR`
//
// Training step = what the trainer does (src/train/trainer.cpp): zero_grad, forward_loss, backward,
// global grad norm, clip, one fused AdamW pass over the flat buffer; random byte tokens; the
// warm-up steps are not timed. Decode = greedy decoding of `decode-batch` sequences one token per
// step through a Decoder (infer/decoder.h: Model::step, replayed as a CUDA graph on cuda) after a
// prefill of `prefill` tokens (neither the prefill nor the warm-up steps are timed), once per batch
// size of the list; the first one is also reported as decode_tokens_per_s.
//
// train.device (cpu | cuda) says where both run: on cuda the parameters, optimizer state and
// activation arena live on the GPU and only the token ids and the loss / logits cross. Each decode
// row also gives the memory-bandwidth bound (decode_bound below): the bytes a step must read at least
// divided by the memory bandwidth (the device's peak on cuda, or --hbm-gbs) and the share of it
// achieved. Only train.precision fp32 is measured (the PyTorch peer is fp32 too).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_args.h"
#include "core/device.h"
#include "core/error.h"
#include "core/rng.h"
#include "infer/decoder.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/optim.h"
#include "kernels/dispatch.h"
#include "models/model.h"
#include "train/config_load.h"

using namespace strata;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string config;
  std::vector<std::string> overrides;
  int64_t batch = 0, seq = 0;  // 0 -> train.batch / train.seq of the config
  int64_t train_steps = 10, warmup_steps = 2;
  int64_t decode_tokens = 64, decode_warmup = 4, prefill = 16;
  std::vector<int64_t> decode_batches{4};
  double hbm_gbs = 0;  // 0: the device's peak on cuda, unknown on cpu
  uint64_t seed = 1;
  std::string dump_dir;
};

[[noreturn]] void usage(const std::string& err) {
  if (!err.empty()) std::fprintf(stderr, "bench_model: %s\n", err.c_str());
  std::fprintf(stderr,
               "usage: bench_model CONFIG.yaml [key=value ...] [--batch B] [--seq T] [--train-steps N]\n"
               "                   [--warmup-steps N] [--decode-tokens N] [--decode-batch B[,B...]]\n"
               "                   [--decode-warmup N] [--prefill N] [--seed S] [--hbm-gbs G] [--dump DIR]\n"
               "Prints {\"train_tokens_per_s\":..., \"decode_tokens_per_s\":..., \"params\":..., ...}.\n"
               "train.device=cuda runs both on the GPU.\n");
  std::exit(err.empty() ? 0 : 2);
}

Options parse(int argc, char** argv) {
  Options o;
  auto int_arg = [&](int& i, const std::string& name) -> int64_t {
    if (i + 1 >= argc) usage(name + " needs a value");
    std::string v = argv[++i];
    char* end = nullptr;
    long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end || x < 0) usage(name + ": expected a non-negative integer, got '" + v + "'");
    return x;
  };
  auto int_list = [&](int& i, const std::string& name) {
    if (i + 1 >= argc) usage(name + " needs a value");
    const std::string v = argv[++i];
    std::vector<int64_t> out;
    for (long x : strata::bench::parse_list(v.c_str())) out.push_back(x);
    if (out.empty() || *std::min_element(out.begin(), out.end()) < 1)
      usage(name + ": expected positive integers separated by commas, got '" + v + "'");
    return out;
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") usage("");
    else if (a == "--batch") o.batch = int_arg(i, a);
    else if (a == "--seq") o.seq = int_arg(i, a);
    else if (a == "--train-steps") o.train_steps = int_arg(i, a);
    else if (a == "--warmup-steps") o.warmup_steps = int_arg(i, a);
    else if (a == "--decode-tokens") o.decode_tokens = int_arg(i, a);
    else if (a == "--decode-batch") o.decode_batches = int_list(i, a);
    else if (a == "--decode-warmup") o.decode_warmup = int_arg(i, a);
    else if (a == "--prefill") o.prefill = int_arg(i, a);
    else if (a == "--seed") o.seed = uint64_t(int_arg(i, a));
    else if (a == "--hbm-gbs") {
      if (i + 1 >= argc) usage("--hbm-gbs needs a value");
      std::string v = argv[++i];
      char* end = nullptr;
      o.hbm_gbs = std::strtod(v.c_str(), &end);
      if (v.empty() || *end || !(o.hbm_gbs > 0)) usage("--hbm-gbs: expected a positive number of GB/s, got '" + v + "'");
    }
    else if (a == "--dump") {
      if (i + 1 >= argc) usage("--dump needs a directory");
      o.dump_dir = argv[++i];
    } else if (a.rfind("--", 0) == 0) usage("unknown option '" + a + "'");
    else if (o.config.empty()) o.config = a;
    else o.overrides.push_back(a);
  }
  if (o.config.empty()) usage("missing CONFIG.yaml");
  return o;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// CPU seconds of the whole process (every thread) since `c0`, a std::clock() reading. On a shared
// machine it moves much less with the neighbours' load than wall time does (waiting for a core is not
// counted), so with one thread it compares builds fairly where wall time cannot (bench/portable_cost.sh).
double cpu_seconds_since(std::clock_t c0) { return double(std::clock() - c0) / CLOCKS_PER_SEC; }

// Waits for the work queued on `d` (timings end here; cpu ops are synchronous).
void synchronize(Device d) {
#ifdef STRATA_WITH_CUDA
  if (d == Device::cuda) cuda::synchronize();
#else
  (void)d;
#endif
}

int32_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return int32_t(best);
}

int64_t count_params(const ParamStore& ps) {
  int64_t n = 0;
  for (auto& p : ps.infos()) n += p.numel;  // without the alignment padding of the flat buffer
  return n;
}

// Random byte tokens; targets are the next token of the same random stream (as a text batch).
void random_batch(std::vector<int32_t>& ids, std::vector<int32_t>& tgt, int64_t B, int64_t T, int64_t V, Rng& rng) {
  for (int64_t b = 0; b < B; ++b) {
    int32_t prev = int32_t(rng.below(uint64_t(V)));
    for (int64_t t = 0; t < T; ++t) {
      int32_t next = int32_t(rng.below(uint64_t(V)));
      ids[size_t(b * T + t)] = prev;
      tgt[size_t(b * T + t)] = next;
      prev = next;
    }
  }
}

struct TrainResult {
  double tokens_per_s = 0, seconds = 0, cpu_seconds = 0;
  float loss_first = NAN, loss_last = NAN;
};

// On the parameters' device: the optimizer state and the arena are made there too.
TrainResult bench_train(Model& model, const Config& cfg, int64_t B, int64_t T, int64_t steps, int64_t warmup,
                        Rng& rng) {
  ParamStore& ps = model.params();
  const Device device = ps.device();
  const int64_t P = ps.numel(), V = model.vocab();
  auto m = DeviceArray<float>::zeros(size_t(P), device), v = DeviceArray<float>::zeros(size_t(P), device);
  const std::vector<uint8_t> decay_host = ps.decay_mask();
  auto decay = DeviceArray<uint8_t>::from_host(decay_host.data(), decay_host.size(), device);
  std::vector<int32_t> ids(size_t(B * T)), tgt(size_t(B * T));
  Arena arena(device);
  Ctx ctx{device, &arena, true};
  const auto& o = cfg.optim;
  TrainResult r;
  int64_t t = 0;
  auto one_step = [&]() {
    random_batch(ids, tgt, B, T, V, rng);  // ~B*T Philox draws: negligible next to a step
    ps.zero_grad();
    arena.reset();
    float loss = model.forward_loss(ctx, ids.data(), tgt.data(), B, T);
    model.backward(ctx, 1.0f);
    double gnorm = std::sqrt(STRATA_OP_VALUE(device, sum_squares, ps.flat_grad(), P));
    float scale = (o.clip > 0 && gnorm > o.clip) ? float(o.clip / gnorm) : 1.0f;
    STRATA_OP(device, adamw_update, ps.flat(), ps.flat_grad(), m.data(), v.data(), decay.data(), P, o.lr, o.beta1,
              o.beta2, o.eps, o.weight_decay, ++t, scale);
    if (std::isnan(r.loss_first)) r.loss_first = loss;
    r.loss_last = loss;
  };
  for (int64_t i = 0; i < warmup; ++i) one_step();
  auto t0 = Clock::now();
  const std::clock_t c0 = std::clock();
  for (int64_t i = 0; i < steps; ++i) one_step();
  synchronize(device);  // the last optimizer step
  r.seconds = seconds_since(t0);
  r.cpu_seconds = cpu_seconds_since(c0);
  r.tokens_per_s = steps > 0 && r.seconds > 0 ? double(B * T * steps) / r.seconds : 0.0;
  return r;
}

struct DecodeResult {
  int64_t batch = 0;
  double tokens_per_s = 0, seconds = 0, cpu_seconds = 0;
  int64_t cache_bytes = 0, graph_steps = 0;
  double bytes_per_step = 0;  // decode_bound: the least a step reads
};

// The bytes one decode step of B sequences must read at least: every parameter once (fp32), and per
// sequence its whole cache as it stands: the K/V (or MLA latent) entries of `context` positions and
// the fixed-size conv / SSM state. Writes (the new entries, the updated states), activations and
// the logits are not counted, and an MoE counts all its experts (at batch 1 a step reads only top_k
// of them, so the bound is then too low and the achieved share can pass 100%).
double decode_bound(const Model& model, int64_t B, double context) {
  double per_seq = 0;
  for (const auto& L : model.layers())
    per_seq += double(L.block->cache_bytes_per_token()) * context + double(L.block->cache_bytes_fixed());
  return double(sizeof(float)) * double(count_params(model.params())) + double(B) * per_seq;
}

DecodeResult bench_decode(Model& model, int64_t Bd, int64_t prefill, int64_t warmup, int64_t tokens, Rng& rng) {
  const int64_t V = model.vocab();
  Decoder dec(model, Bd, prefill + warmup + tokens + 1);
  std::vector<int32_t> next(static_cast<size_t>(Bd));
  std::vector<float> logits(size_t(Bd * V));
  if (prefill > 0) {
    std::vector<int32_t> prompt(size_t(Bd * prefill));
    for (auto& x : prompt) x = int32_t(rng.below(uint64_t(V)));
    dec.prefill(prompt.data(), prefill, logits.data());
    for (int64_t b = 0; b < Bd; ++b) next[size_t(b)] = argmax(&logits[size_t(b * V)], V);
  } else {
    for (auto& x : next) x = int32_t(rng.below(uint64_t(V)));
  }
  // Decoder::step returns host logits, so each step ends with its device work done.
  auto one_step = [&]() {
    dec.step(next.data(), logits.data());
    for (int64_t b = 0; b < Bd; ++b) next[size_t(b)] = argmax(&logits[size_t(b * V)], V);
  };
  for (int64_t i = 0; i < warmup; ++i) one_step();
  auto t0 = Clock::now();
  const std::clock_t c0 = std::clock();
  for (int64_t i = 0; i < tokens; ++i) one_step();
  DecodeResult r;
  r.batch = Bd;
  r.seconds = seconds_since(t0);
  r.cpu_seconds = cpu_seconds_since(c0);
  r.tokens_per_s = tokens > 0 && r.seconds > 0 ? double(Bd * tokens) / r.seconds : 0.0;
  r.cache_bytes = dec.cache().bytes();
  r.graph_steps = dec.graph_steps();
  // A step at cache position p reads p + 1 entries (its own included); the mean over the timed steps.
  r.bytes_per_step = decode_bound(model, Bd, double(prefill + warmup) + double(tokens + 1) / 2);
  return r;
}

// Everything `python -m torch_ref.bench --check` needs to confirm that the PyTorch peer computes the
// same function: the weights (flat buffer with offsets) after a few AdamW steps at a high learning
// rate (so that norms, biases, A_log, D and dt_bias have left their initial values and every path
// matters), one training batch with its loss, aux loss and parameter gradients, and the logits of a
// prefill followed by decode steps on fixed tokens.
void dump(Model& model, const Config& cfg, const Options& o, int64_t B, int64_t T) {
  namespace fs = std::filesystem;
  fs::create_directories(o.dump_dir);
  ParamStore& ps = model.params();
  const int64_t V = model.vocab();
  {
    Config hot = cfg;
    hot.optim.lr = 1e-2f;
    hot.optim.weight_decay = 0.0f;
    Rng train_rng(o.seed + 1);
    bench_train(model, hot, B, T, 3, 0, train_rng);
  }
  nlohmann::json j;
  j["config"] = o.config;
  j["overrides"] = o.overrides;
  j["params"] = nlohmann::json::array();
  for (auto& p : ps.infos())
    j["params"].push_back({{"name", p.name}, {"shape", p.shape}, {"offset", p.offset}, {"numel", p.numel}});
  auto write_flat = [&](const char* name, const float* x) {
    std::ofstream f(fs::path(o.dump_dir) / name, std::ios::binary);
    f.write(reinterpret_cast<const char*>(x), std::streamsize(sizeof(float) * size_t(ps.numel())));
  };
  write_flat("params.bin", ps.flat());
  Rng rng(o.seed);
  std::vector<int32_t> ids(size_t(B * T)), tgt(size_t(B * T));
  random_batch(ids, tgt, B, T, V, rng);
  {
    Arena arena;
    Ctx ctx{Device::cpu, &arena, true};
    float loss = model.forward_loss(ctx, ids.data(), tgt.data(), B, T);
    j["train"] = {{"batch", B}, {"seq", T}, {"ids", ids}, {"targets", tgt}, {"loss", loss},
                  {"aux_loss", model.aux_loss()}};
    ps.zero_grad();
    model.backward(ctx, 1.0f);
    write_flat("grads.bin", ps.flat_grad());  // d(loss + aux losses)/d(params)
    ps.zero_grad();
  }
  const int64_t Bd = o.decode_batches.front(), P = std::max<int64_t>(1, o.prefill), S = 8;
  std::vector<int32_t> prompt(size_t(Bd * P)), step_ids(size_t(S * Bd));
  for (auto& x : prompt) x = int32_t(rng.below(uint64_t(V)));
  for (auto& x : step_ids) x = int32_t(rng.below(uint64_t(V)));
  Arena arena;
  Ctx ctx{Device::cpu, &arena, false};
  ModelCache cache = model.allocate_cache(Bd, P + S);
  std::vector<float> pl(size_t(Bd * P * V)), logits;  // logits[b][s][v], s = 0: last prefill position
  logits.resize(size_t(Bd * (S + 1) * V));
  model.forward_logits(ctx, pl.data(), prompt.data(), Bd, P, &cache);
  for (int64_t b = 0; b < Bd; ++b)
    std::copy_n(&pl[size_t((b * P + P - 1) * V)], V, &logits[size_t(b * (S + 1) * V)]);
  std::vector<float> sl(size_t(Bd * V));
  for (int64_t s = 0; s < S; ++s) {
    arena.reset();
    model.step(ctx, sl.data(), &step_ids[size_t(s * Bd)], cache);
    for (int64_t b = 0; b < Bd; ++b) std::copy_n(&sl[size_t(b * V)], V, &logits[size_t((b * (S + 1) + s + 1) * V)]);
  }
  j["decode"] = {{"batch", Bd}, {"prefill", P}, {"prompt", prompt}, {"step_ids", step_ids}, {"logits", logits}};
  std::ofstream(fs::path(o.dump_dir) / "dump.json") << j.dump() << "\n";
  std::fprintf(stderr, "bench_model: wrote %s/{params.bin,grads.bin,dump.json}\n", o.dump_dir.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  try {
    Config cfg = load_config(o.config, o.overrides);
    const int64_t B = o.batch ? o.batch : cfg.train.batch;
    const int64_t T = o.seq ? o.seq : cfg.train.seq;
    const Device device = cfg.train.device == "cuda" ? Device::cuda : Device::cpu;
    if (cfg.train.precision != "fp32")
      throw InputError("train.precision: bench_model measures fp32 only (its PyTorch peer is fp32), got '" +
                       cfg.train.precision + "'");
    Model model(cfg.model, o.seed);
    if (!o.dump_dir.empty()) {
      // The reference outputs are strata's cpu ones (the CUDA twins are held to them by tests/cuda).
      if (device != Device::cpu) std::fprintf(stderr, "bench_model: --dump runs on cpu (train.device ignored)\n");
      dump(model, cfg, o, B, T);
      return 0;
    }
    require_device(device, "train.device");
    model.params().to_device(device);
    std::string device_name = "cpu";
    double hbm_gbs = o.hbm_gbs;
#ifdef STRATA_WITH_CUDA
    if (device == Device::cuda) {
      const cuda::DeviceInfo info = cuda::device_info();
      device_name = info.name;
      if (hbm_gbs <= 0) hbm_gbs = info.peak_gbs;
    }
#endif
    Rng rng(o.seed);
    TrainResult tr = bench_train(model, cfg, B, T, o.train_steps, o.warmup_steps, rng);
    std::vector<DecodeResult> decodes;
    for (int64_t Bd : o.decode_batches)
      decodes.push_back(bench_decode(model, Bd, o.prefill, o.decode_warmup, o.decode_tokens, rng));
    const DecodeResult& dr = decodes.front();
    nlohmann::json decode_rows = nlohmann::json::array();
    for (const DecodeResult& d : decodes) {
      // Bound: B tokens per step at the step time that moving bytes_per_step at hbm_gbs takes.
      const double bound = hbm_gbs > 0 ? double(d.batch) * hbm_gbs * 1e9 / d.bytes_per_step : 0.0;
      decode_rows.push_back({{"batch", d.batch},
                             {"tokens_per_s", d.tokens_per_s},
                             {"seconds", d.seconds},
                             {"cache_bytes", d.cache_bytes},
                             {"graph_steps", d.graph_steps},
                             {"bytes_per_step", d.bytes_per_step},
                             {"bound_tokens_per_s", bound > 0 ? nlohmann::json(bound) : nlohmann::json(nullptr)},
                             {"bound_pct", bound > 0 ? nlohmann::json(100.0 * d.tokens_per_s / bound)
                                                     : nlohmann::json(nullptr)}});
    }
    nlohmann::json j = {
        {"train_tokens_per_s", tr.tokens_per_s},
        {"decode_tokens_per_s", dr.tokens_per_s},
        {"device", device == Device::cuda ? "cuda" : "cpu"},
        {"device_name", device_name},
        {"hbm_gbs", hbm_gbs > 0 ? nlohmann::json(hbm_gbs) : nlohmann::json(nullptr)},
        {"decode", decode_rows},
        {"params", count_params(model.params())},
        {"impl", "strata"},
        {"threads", omp_get_max_threads()},
        {"layers", model.layer_pattern()},
        {"batch", B},
        {"seq", T},
        {"train_steps", o.train_steps},
        {"train_s", tr.seconds},
        {"train_cpu_s", tr.cpu_seconds},
        {"cpu_kernels", cpu::kernel_isa()},
        {"decode_batch", dr.batch},
        {"decode_tokens", o.decode_tokens},
        {"decode_s", dr.seconds},
        {"decode_cpu_s", dr.cpu_seconds},
        {"prefill", o.prefill},
        {"cache_bytes", dr.cache_bytes},
        {"loss_first", std::isnan(tr.loss_first) ? nlohmann::json(nullptr) : nlohmann::json(tr.loss_first)},
        {"loss_last", std::isnan(tr.loss_last) ? nlohmann::json(nullptr) : nlohmann::json(tr.loss_last)},
    };
    std::cout << j.dump() << std::endl;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_model: %s\n", e.what());
    return 1;
  }
  return 0;
}
