// Inference speed of strata on a trained or imported model (a strata checkpoint, or a Hugging Face
// model directory imported on the fly): prefill tokens/s and decode tokens/s at batch 1, printed as
// one JSON line. bench/vs_hf.py runs this next to transformers and llama.cpp on the same model.
//
//   bench_infer MODEL [--prompt-len P] [--decode-tokens N] [--warmup N] [--runs R] [--ids 1,2,3] [--seed S]
//
// The work is what `strata generate` does (src/infer/generate.cpp), greedy, without sampling costs:
//   prefill = Model::prefill over the P-token prompt with an empty cache (fills the caches; the
//             head runs on the last position only, as in transformers' generate and llama.cpp),
//   decode  = N calls of Model::step, each on the argmax of the previous logits.
// prefill tokens/s = P / prefill time; decode tokens/s = N / decode time (the prefill excluded);
// with --runs R, the medians of R timed generations.
// Before timing, one untimed prefill + `warmup` steps warm the caches, the activation arena (kept
// for the timed run) and the thread pool. The prompt is `--ids` or P random ids from `--seed`; the greedy tokens (the
// one after the prefill, then one per step) are printed so that other implementations can be
// checked against them. Threads: OMP_NUM_THREADS.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "infer/generate.h"
#include "load/model_loader.h"
#include "models/model.h"

using namespace strata;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string model;
  int64_t prompt_len = 128, decode_tokens = 64, warmup = 4, runs = 1;
  uint64_t seed = 1;
  std::vector<int32_t> ids;  // the prompt, when given
};

[[noreturn]] void usage(const std::string& err) {
  if (!err.empty()) std::fprintf(stderr, "bench_infer: %s\n", err.c_str());
  std::fprintf(stderr,
               "usage: bench_infer MODEL [--prompt-len P] [--decode-tokens N] [--warmup N] [--runs R] [--ids 1,2,3]\n"
               "                   [--seed S]\n"
               "MODEL: a strata checkpoint or a Hugging Face model directory. Threads: OMP_NUM_THREADS.\n"
               "Prints {\"prefill_tokens_per_s\":..., \"decode_tokens_per_s\":..., \"params\":..., \"tokens\":[...]}.\n");
  std::exit(err.empty() ? 0 : 2);
}

int64_t parse_int(const std::string& name, const std::string& v) {
  char* end = nullptr;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end || x < 0) usage(name + ": expected a non-negative integer, got '" + v + "'");
  return x;
}

Options parse(int argc, char** argv) {
  Options o;
  auto value = [&](int& i, const std::string& name) -> std::string {
    if (i + 1 >= argc) usage(name + " needs a value");
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") usage("");
    else if (a == "--prompt-len") o.prompt_len = parse_int(a, value(i, a));
    else if (a == "--decode-tokens") o.decode_tokens = parse_int(a, value(i, a));
    else if (a == "--warmup") o.warmup = parse_int(a, value(i, a));
    else if (a == "--runs") o.runs = parse_int(a, value(i, a));
    else if (a == "--seed") o.seed = uint64_t(parse_int(a, value(i, a)));
    else if (a == "--ids") {
      std::stringstream ss(value(i, a));
      for (std::string tok; std::getline(ss, tok, ',');) o.ids.push_back(int32_t(parse_int("--ids", tok)));
    } else if (a.rfind("--", 0) == 0) usage("unknown option '" + a + "'");
    else if (o.model.empty()) o.model = a;
    else usage("unexpected argument '" + a + "'");
  }
  if (o.model.empty()) usage("missing MODEL");
  if (!o.ids.empty()) o.prompt_len = int64_t(o.ids.size());
  if (o.prompt_len < 1) usage("the prompt needs at least one token");
  if (o.runs < 1) usage("--runs must be at least 1");
  return o;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

int32_t argmax(const float* x, int64_t n) { return int32_t(std::max_element(x, x + n) - x); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Timing {
  double prefill_s = 0, decode_s = 0;
  std::vector<int32_t> tokens;  // greedy: the token after the prompt, then one per step
};

// One generation of `steps` decode steps after the prompt, on a fresh cache. The arena is kept from
// the warm-up run (its blocks are then allocated and touched), as a serving loop would keep it.
Timing run_once(Model& model, Arena& arena, const std::vector<int32_t>& prompt, int64_t steps) {
  const int64_t V = model.vocab(), P = int64_t(prompt.size());
  arena.reset();
  Ctx ctx{Device::cpu, &arena, false};
  ModelCache cache = model.allocate_cache(1, P + steps + 1);
  std::vector<float> logits(static_cast<size_t>(V));
  Timing t;
  auto t0 = Clock::now();
  model.prefill(ctx, logits.data(), prompt.data(), 1, P, cache);
  int32_t next = argmax(logits.data(), V);
  t.prefill_s = seconds_since(t0);
  t.tokens.push_back(next);
  t0 = Clock::now();
  for (int64_t i = 0; i < steps; ++i) {
    arena.reset();
    model.step(ctx, logits.data(), &next, cache);
    next = argmax(logits.data(), V);
    t.tokens.push_back(next);
  }
  t.decode_s = seconds_since(t0);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  try {
    auto t_load = Clock::now();
    LoadedModel lm = load_model(o.model);
    const double load_s = seconds_since(t_load);
    Model& model = *lm.model;
    const int64_t V = model.vocab();
    std::vector<int32_t> prompt = o.ids;
    if (prompt.empty()) {
      Rng rng(o.seed);
      for (int64_t i = 0; i < o.prompt_len; ++i) prompt.push_back(int32_t(rng.below(uint64_t(V))));
    }
    for (int32_t id : prompt)
      if (id >= V) throw InputError(fmt::format("--ids: token {} is outside the vocabulary ({} ids)", id, V));
    Arena arena;
    run_once(model, arena, prompt, o.warmup);  // warm-up: not timed
    std::vector<double> prefill_s, decode_s;
    Timing t;
    for (int64_t r = 0; r < o.runs; ++r) {
      Timing tr = run_once(model, arena, prompt, o.decode_tokens);
      prefill_s.push_back(tr.prefill_s);
      decode_s.push_back(tr.decode_s);
      if (r == 0) t = std::move(tr);
    }
    t.prefill_s = median(prefill_s);
    t.decode_s = median(decode_s);
    int64_t params = 0;
    for (auto& p : model.params().infos()) params += p.numel;
    nlohmann::json j = {
        {"prefill_tokens_per_s", double(prompt.size()) / t.prefill_s},
        {"decode_tokens_per_s", o.decode_tokens > 0 ? double(o.decode_tokens) / t.decode_s : 0.0},
        {"params", params},
        {"impl", "strata"},
        {"threads", omp_get_max_threads()},
        {"layers", model.layer_pattern()},
        {"prompt_len", prompt.size()},
        {"decode_tokens", o.decode_tokens},
        {"runs", o.runs},
        {"prefill_s", t.prefill_s},
        {"decode_s", t.decode_s},
        {"load_s", load_s},
        {"tokens", t.tokens},
    };
    std::cout << j.dump() << std::endl;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_infer: %s\n", e.what());
    return 1;
  }
  return 0;
}
