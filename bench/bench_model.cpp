// Whole-model throughput of strata on one config: training tokens/s and decode tokens/s, printed as
// one JSON line. bench/vs_pytorch.py runs this next to the PyTorch peer (python/torch_ref) and
// prints the ratios; docs/bench.md describes what is measured.
//
//   bench_model CONFIG.yaml [key=value ...] [--batch B] [--seq T] [--train-steps N] [--warmup-steps N]
//               [--decode-tokens N] [--decode-batch B] [--decode-warmup N] [--prefill N] [--seed S]
//   bench_model CONFIG.yaml --dump DIR   # weights + a batch's loss + decode logits, for
//                                        # `python -m torch_ref.bench CONFIG --check DIR`
//
// Training step = what the trainer does (src/train/trainer.cpp): zero_grad, forward_loss, backward,
// global grad norm, clip, one fused AdamW pass over the flat buffer; random byte tokens; the
// warm-up steps are not timed. Decode = greedy decoding of `decode-batch` sequences one token per
// step through Model::step after a prefill of `prefill` tokens (neither the prefill nor the
// warm-up steps are timed).
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/cpu/optim.h"
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
  int64_t decode_tokens = 64, decode_batch = 4, decode_warmup = 4, prefill = 16;
  uint64_t seed = 1;
  std::string dump_dir;
};

[[noreturn]] void usage(const std::string& err) {
  if (!err.empty()) std::fprintf(stderr, "bench_model: %s\n", err.c_str());
  std::fprintf(stderr,
               "usage: bench_model CONFIG.yaml [key=value ...] [--batch B] [--seq T] [--train-steps N]\n"
               "                   [--warmup-steps N] [--decode-tokens N] [--decode-batch B] [--decode-warmup N]\n"
               "                   [--prefill N] [--seed S] [--dump DIR]\n"
               "Prints {\"train_tokens_per_s\":..., \"decode_tokens_per_s\":..., \"params\":..., ...}.\n");
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
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") usage("");
    else if (a == "--batch") o.batch = int_arg(i, a);
    else if (a == "--seq") o.seq = int_arg(i, a);
    else if (a == "--train-steps") o.train_steps = int_arg(i, a);
    else if (a == "--warmup-steps") o.warmup_steps = int_arg(i, a);
    else if (a == "--decode-tokens") o.decode_tokens = int_arg(i, a);
    else if (a == "--decode-batch") o.decode_batch = int_arg(i, a);
    else if (a == "--decode-warmup") o.decode_warmup = int_arg(i, a);
    else if (a == "--prefill") o.prefill = int_arg(i, a);
    else if (a == "--seed") o.seed = uint64_t(int_arg(i, a));
    else if (a == "--dump") {
      if (i + 1 >= argc) usage("--dump needs a directory");
      o.dump_dir = argv[++i];
    } else if (a.rfind("--", 0) == 0) usage("unknown option '" + a + "'");
    else if (o.config.empty()) o.config = a;
    else o.overrides.push_back(a);
  }
  if (o.config.empty()) usage("missing CONFIG.yaml");
  if (o.decode_batch < 1) usage("--decode-batch must be at least 1");
  return o;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

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
  double tokens_per_s = 0, seconds = 0;
  float loss_first = NAN, loss_last = NAN;
};

TrainResult bench_train(Model& model, const Config& cfg, int64_t B, int64_t T, int64_t steps, int64_t warmup,
                        Rng& rng) {
  ParamStore& ps = model.params();
  const int64_t P = ps.numel(), V = model.vocab();
  std::vector<float> m(size_t(P), 0.0f), v(size_t(P), 0.0f);
  std::vector<uint8_t> decay = ps.decay_mask();
  std::vector<int32_t> ids(size_t(B * T)), tgt(size_t(B * T));
  Arena arena;
  Ctx ctx{Device::cpu, &arena, true};
  const auto& o = cfg.optim;
  TrainResult r;
  int64_t t = 0;
  auto one_step = [&]() {
    random_batch(ids, tgt, B, T, V, rng);  // ~B*T Philox draws: negligible next to a step
    ps.zero_grad();
    arena.reset();
    float loss = model.forward_loss(ctx, ids.data(), tgt.data(), B, T);
    model.backward(ctx, 1.0f);
    double gnorm = std::sqrt(cpu::sum_squares(ps.flat_grad(), P));
    float scale = (o.clip > 0 && gnorm > o.clip) ? float(o.clip / gnorm) : 1.0f;
    cpu::adamw_update(ps.flat(), ps.flat_grad(), m.data(), v.data(), decay.data(), P, o.lr, o.beta1, o.beta2, o.eps,
                      o.weight_decay, ++t, scale);
    if (std::isnan(r.loss_first)) r.loss_first = loss;
    r.loss_last = loss;
  };
  for (int64_t i = 0; i < warmup; ++i) one_step();
  auto t0 = Clock::now();
  for (int64_t i = 0; i < steps; ++i) one_step();
  r.seconds = seconds_since(t0);
  r.tokens_per_s = steps > 0 && r.seconds > 0 ? double(B * T * steps) / r.seconds : 0.0;
  return r;
}

struct DecodeResult {
  double tokens_per_s = 0, seconds = 0;
  int64_t cache_bytes = 0;
};

DecodeResult bench_decode(Model& model, int64_t Bd, int64_t prefill, int64_t warmup, int64_t tokens, Rng& rng) {
  const int64_t V = model.vocab();
  Arena arena;
  Ctx ctx{Device::cpu, &arena, false};
  ModelCache cache = model.allocate_cache(Bd, prefill + warmup + tokens + 1);
  std::vector<int32_t> next(static_cast<size_t>(Bd));
  std::vector<float> logits;
  if (prefill > 0) {
    std::vector<int32_t> prompt(size_t(Bd * prefill));
    for (auto& x : prompt) x = int32_t(rng.below(uint64_t(V)));
    logits.resize(size_t(Bd * prefill * V));
    model.forward_logits(ctx, logits.data(), prompt.data(), Bd, prefill, &cache);
    for (int64_t b = 0; b < Bd; ++b) next[size_t(b)] = argmax(&logits[size_t((b * prefill + prefill - 1) * V)], V);
  } else {
    for (auto& x : next) x = int32_t(rng.below(uint64_t(V)));
  }
  logits.assign(size_t(Bd * V), 0.0f);
  auto one_step = [&]() {
    arena.reset();
    model.step(ctx, logits.data(), next.data(), cache);
    for (int64_t b = 0; b < Bd; ++b) next[size_t(b)] = argmax(&logits[size_t(b * V)], V);
  };
  for (int64_t i = 0; i < warmup; ++i) one_step();
  auto t0 = Clock::now();
  for (int64_t i = 0; i < tokens; ++i) one_step();
  DecodeResult r;
  r.seconds = seconds_since(t0);
  r.tokens_per_s = tokens > 0 && r.seconds > 0 ? double(Bd * tokens) / r.seconds : 0.0;
  r.cache_bytes = cache.bytes();
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
  const int64_t Bd = o.decode_batch, P = std::max<int64_t>(1, o.prefill), S = 8;
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
    Model model(cfg.model, o.seed);
    if (!o.dump_dir.empty()) {
      dump(model, cfg, o, B, T);
      return 0;
    }
    Rng rng(o.seed);
    TrainResult tr = bench_train(model, cfg, B, T, o.train_steps, o.warmup_steps, rng);
    DecodeResult dr = bench_decode(model, o.decode_batch, o.prefill, o.decode_warmup, o.decode_tokens, rng);
    nlohmann::json j = {
        {"train_tokens_per_s", tr.tokens_per_s},
        {"decode_tokens_per_s", dr.tokens_per_s},
        {"params", count_params(model.params())},
        {"impl", "strata"},
        {"threads", omp_get_max_threads()},
        {"layers", model.layer_pattern()},
        {"batch", B},
        {"seq", T},
        {"train_steps", o.train_steps},
        {"train_s", tr.seconds},
        {"decode_batch", o.decode_batch},
        {"decode_tokens", o.decode_tokens},
        {"decode_s", dr.seconds},
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
