// strata — the command-line interface: train | generate | score | inspect.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "infer/generate.h"
#include "models/model.h"
#include "train/checkpoint.h"
#include "train/config_load.h"
#include "train/trainer.h"
#include "models/inspect.h"

namespace fs = std::filesystem;
using namespace strata;

// A checkpoint argument may name a file or a run directory (its newest good checkpoint).
static std::string resolve_checkpoint(const std::string& p) {
  if (!fs::is_directory(p)) {
    if (!fs::exists(p)) throw InputError(fmt::format("checkpoint '{}' not found", p));
    return p;
  }
  std::string why;
  auto c = newest_good_checkpoint(p, &why);
  if (!c) throw InputError(fmt::format("no usable checkpoint in '{}'{}", p, why.empty() ? "" : ": " + why));
  return *c;
}

static std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(fmt::format("cannot read '{}'", path));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int main(int argc, char** argv) {
  CLI::App app{"strata: compose, train and sample hybrid attention / Mamba / MoE models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(STRATA_VERSION) + " (" + STRATA_GIT_COMMIT + ")");

  // train
  auto* tr = app.add_subcommand("train", "Train a model from a YAML config (Hydra-style key=value overrides)");
  std::string cfg_path;
  std::vector<std::string> overrides;
  bool resume = false, quiet = false, help_config = false;
  int64_t stop_after = -1;
  tr->add_option("config", cfg_path, "experiment YAML, e.g. experiments/quickstart.yaml");
  tr->add_option("overrides", overrides, "overrides: a.b=v (set), +a.b=v (add), ~a.b (remove)");
  tr->add_flag("--resume", resume, "continue from the newest good checkpoint in the run directory");
  tr->add_option("--stop-after", stop_after, "stop after this many steps in this invocation (saving a checkpoint)");
  tr->add_flag("--quiet", quiet, "no progress output");
  tr->add_flag("--help-config", help_config, "list every config key with its default and meaning");

  // generate
  auto* gen = app.add_subcommand("generate", "Sample text from a checkpoint (prefill with forward, then cached steps)");
  std::string ckpt, prompt = "\n";
  GenerateOptions gopts;
  gen->add_option("--ckpt", ckpt, "checkpoint file, or a run directory (its newest good checkpoint)")->required();
  gen->add_option("--prompt", prompt, "prompt text")->capture_default_str();
  gen->add_option("--max-tokens", gopts.max_tokens, "tokens to generate")->capture_default_str()->check(CLI::PositiveNumber);
  gen->add_option("--temperature", gopts.sampler.temperature, "0 = greedy")->capture_default_str()->check(CLI::NonNegativeNumber);
  gen->add_option("--top-k", gopts.sampler.top_k, "keep the k most likely tokens (0 = off)")->capture_default_str()->check(CLI::NonNegativeNumber);
  gen->add_option("--top-p", gopts.sampler.top_p, "nucleus sampling mass (1 = off)")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  gen->add_option("--seed", gopts.seed, "sampling seed")->capture_default_str();

  // score
  auto* sc = app.add_subcommand("score", "Per-position logits of a text, by training forward or by token-by-token decode");
  std::string text_file, mode = "forward", out_path;
  sc->add_option("--ckpt", ckpt, "checkpoint file or run directory")->required();
  sc->add_option("--text-file", text_file, "text to score")->required();
  sc->add_option("--mode", mode, "forward | decode")->check(CLI::IsMember({"forward", "decode"}))->capture_default_str();
  sc->add_option("--out", out_path, "output .npy of float32 logits [T, V]")->required();

  // inspect
  auto* ins = app.add_subcommand("inspect", "Layer table, parameter counts, FLOPs and cache bytes per token");
  std::string what;
  int64_t ctx_len = 0;
  ins->add_option("path", what, "a YAML config or a checkpoint")->required();
  ins->add_option("--context", ctx_len, "context length for FLOPs (default train.seq)");

  CLI11_PARSE(app, argc, argv);
  try {
    if (*tr) {
      if (help_config) {
        std::cout << config_help();
        return 0;
      }
      if (cfg_path.empty()) throw InputError("train: a config file is required (e.g. strata train experiments/quickstart.yaml)");
      Config cfg = load_config(cfg_path, overrides);
      TrainOptions o;
      o.resume = resume;
      o.stop_after = stop_after;
      o.quiet = quiet;
      TrainResult r = train(cfg, to_yaml(cfg), o);
      fmt::print(stderr, "{} at step {}: train loss {:.4f}, val loss {:.4f}, {:.0f} tokens/s, {:.1f}s; checkpoint {}\n",
                 r.interrupted ? "interrupted" : "done", r.step, r.train_loss, r.val_loss, r.tokens_per_s, r.seconds,
                 r.last_checkpoint);
      return 0;
    }
    if (*gen) {
      LoadedModel lm = load_model(resolve_checkpoint(ckpt));
      std::fputs(prompt.c_str(), stdout);
      generate(*lm.model, encode_bytes(prompt), gopts, [](int32_t t) {
        std::fputc(char(uint8_t(t)), stdout);
        std::fflush(stdout);
      });
      std::fputc('\n', stdout);
      return 0;
    }
    if (*sc) {
      LoadedModel lm = load_model(resolve_checkpoint(ckpt));
      std::vector<int32_t> ids = encode_bytes(read_file(text_file));
      if (ids.empty()) throw InputError(fmt::format("'{}' is empty", text_file));
      auto logits = score(*lm.model, ids, mode == "forward" ? ScoreMode::forward : ScoreMode::decode);
      write_npy(out_path, logits, {int64_t(ids.size()), lm.model->vocab()});
      fmt::print(stderr, "wrote {} ({} x {} logits, mode {})\n", out_path, ids.size(), lm.model->vocab(), mode);
      return 0;
    }
    if (*ins) {
      std::cout << inspect_report(what, ctx_len);
      return 0;
    }
  } catch (const InputError& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
