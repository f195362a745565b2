// strata — the command-line interface: train | sweep | generate | serve | score | inspect | init | import hf | export hf | control bench.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "control.h"
#include "core/device.h"
#include "core/error.h"
#include "infer/chat_template.h"
#include "infer/generate.h"
#include "infer/loaded_model.h"
#include "init.h"
#include "inspect.h"
#include "interop/hf_export.h"
#include "interop/hf_import.h"
#include "core/version.h"
#include "kernels/cpu/isa.h"
#include "load/model_loader.h"
#include "models/model.h"
#include "models/quantize.h"
#include "quantize.h"
#include "serve.h"
#include "sweep.h"
#include "train/checkpoint.h"
#include "train/config_load.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using namespace strata;

// `what` is the option it came from, for the message.
static std::string read_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw InputError(fmt::format("{}: '{}' is a directory, not a file", what, path));
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(fmt::format("{}: cannot read '{}'", what, path));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// "1, 2 3" -> {1, 2, 3}: token ids for models without a tokenizer.
static std::vector<int32_t> parse_ids(const std::string& text, const std::string& what, int64_t vocab) {
  std::vector<int32_t> ids;
  std::string cur;
  auto flush = [&] {
    if (cur.empty()) return;
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(cur, &used);
    } catch (...) {
    }
    if (used != cur.size() || v < 0 || v >= vocab)
      throw InputError(fmt::format("{}: '{}' is not a token id in [0, {})", what, cur, vocab));
    ids.push_back(int32_t(v));
    cur.clear();
  };
  for (char c : text) {
    if (c == ',' || std::isspace(static_cast<unsigned char>(c))) flush();
    else cur.push_back(c);
  }
  flush();
  return ids;
}

static void log_line(const std::string& s) { fmt::print(stderr, "{}\n", s); }

// resolve_checkpoint, saying on stderr which newer checkpoints of a run directory were skipped and
// why (as train --resume does), instead of silently using an older one.
static std::string checkpoint_arg(const std::string& p) {
  std::string skipped;
  std::string path = resolve_checkpoint(p, &skipped);
  if (!skipped.empty()) fmt::print(stderr, "warning: skipped unusable checkpoints in '{}': {}; using {}\n", p, skipped, path);
  return path;
}

// Numeric option checks that read as words. CLI11's Range/PositiveNumber print their bounds with %f
// ("0.000000 to 1797693...", 309 digits)
// and let NaN through (every comparison with it is false).
// `generate --chat`: the messages rendered by the model's chat template, tokenized without adding
// special tokens again (the template writes BOS itself), as transformers' apply_chat_template does.
static std::vector<int32_t> encode_chat(const LoadedModel& lm, const std::string& system, const std::string& user,
                                        const std::string& ckpt) {
  if (lm.tokenizer_config_json.empty())
    throw InputError(fmt::format("'{}' has no chat template (no tokenizer_config.json was imported with it); use --prompt", ckpt));
  std::vector<ChatMessage> msgs;
  if (!system.empty()) msgs.push_back({"system", system});
  msgs.push_back({"user", user});
  std::string text = ChatTemplate::from_tokenizer_config(lm.tokenizer_config_json, ckpt).render(msgs, true);
  return lm.tokenizer ? lm.tokenizer->encode(text, false) : encode_text(lm, text);
}

static CLI::Validator number_check(double lo, double hi, bool lo_open = false) {
  std::string want = std::isinf(hi) ? fmt::format("{} {}", lo_open ? ">" : ">=", lo) : fmt::format("in [{}, {}]", lo, hi);
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        char* end = nullptr;
        double v = std::strtod(s.c_str(), &end);
        if (end == s.c_str() || *end != '\0') return fmt::format("'{}' is not a number", s);
        if (!std::isfinite(v)) return fmt::format("must be a finite number {}, got {}", want, s);
        if ((lo_open ? v <= lo : v < lo) || v > hi) return fmt::format("must be {}, got {}", want, s);
        return "";
      },
      want);
}

int main(int argc, char** argv) {
  CLI::App app{"strata: compose, train and sample hybrid attention / Mamba / MoE models"};
  app.require_subcommand(1);
  // The CPU kernels' instruction set says which build this is (native, or portable and what it chose here).
  app.set_version_flag("--version", std::string(strata_version()) + " (" + strata_git_commit() +
                                        "; CPU kernels: " + strata::cpu::kernel_isa() + ")");

  // train
  auto* tr = app.add_subcommand("train", "Train a model from a YAML config (Hydra-style key=value overrides); "
                                          "under mpirun -np N or srun: data parallel over N processes (docs/clusters.md)");
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
  std::vector<std::string> hparam_keys;
  std::string hparams_group;
  tr->add_option("--hparams", hparam_keys, "config keys shown in TensorBoard's HPARAMS tab (comma-separated; default: the usual ones)")
      ->delimiter(',');
  tr->add_option("--hparams-group", hparams_group, "group name of this run in the HPARAMS tab (a sweep's name)");
  MultirunOptions multirun;
  add_multirun_options(tr, multirun);
  SweepCommandOptions sweep_opts;
  auto* sweep = add_sweep_command(app, sweep_opts);

  // generate
  auto* gen = app.add_subcommand("generate", "Sample text from a checkpoint (prefill with forward, then cached steps)");
  std::string ckpt, prompt = "\n";
  GenerateOptions gopts;
  gen->add_option("--ckpt", ckpt, "checkpoint file, a run directory (its newest good checkpoint), or a Hugging Face model directory")->required();
  gen->add_option("--prompt", prompt, "prompt text (through the model's tokenizer, or bytes)")->capture_default_str();
  std::string prompt_ids;
  bool print_ids = false, ignore_eos = false;
  auto* prompt_ids_opt = gen->add_option("--prompt-ids", prompt_ids, "prompt as token ids ('1,2,3'), instead of --prompt");
  std::string chat, chat_system;
  gen->add_option("--chat", chat,
                  "a user message, rendered through the model's chat template (its tokenizer_config.json) with the "
                  "assistant's turn opened, instead of --prompt; prints the reply")
      ->excludes(prompt_ids_opt);
  gen->add_option("--system", chat_system, "with --chat: a system message before the user's");
  gen->add_flag("--print-ids", print_ids, "print the generated token ids instead of text");
  gen->add_flag("--ignore-eos", ignore_eos, "keep generating past the model's end-of-sequence token");
  gen->add_option("--max-tokens", gopts.max_tokens, "tokens to generate")->capture_default_str()->check(number_check(1, INFINITY));
  gen->add_option("--temperature", gopts.sampler.temperature, "0 = greedy")->capture_default_str()->check(number_check(0, INFINITY));
  gen->add_option("--top-k", gopts.sampler.top_k, "keep the k most likely tokens (0 = off)")->capture_default_str()->check(number_check(0, INFINITY));
  gen->add_option("--top-p", gopts.sampler.top_p, "nucleus sampling mass (1 = off)")->capture_default_str()->check(number_check(0, 1));
  gen->add_option("--seed", gopts.seed, "sampling seed")->capture_default_str();
  std::string device = "cpu";
  bool no_graphs = false;
  gen->add_option("--device", device, "where to run: cpu | cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  gen->add_flag("--no-cuda-graphs", no_graphs, "on cuda, launch each decode step's kernels directly instead of replaying a CUDA graph");

  ServeCommandOptions serve_opts;
  auto* serve = add_serve_command(app, serve_opts);
  LoadQuant load_quant;  // --quantize 8|4, --activations on generate / score
  add_quantize_option(gen, load_quant);

  // score
  auto* sc = app.add_subcommand("score", "Per-position logits of a text, by training forward or by token-by-token decode");
  std::string text_file, mode = "forward", out_path;
  sc->add_option("--ckpt", ckpt, "checkpoint file, run directory or Hugging Face model directory")->required();
  std::string ids_file;
  auto* tf_opt = sc->add_option("--text-file", text_file, "text to score (through the model's tokenizer, or bytes)");
  auto* id_opt = sc->add_option("--ids-file", ids_file, "token ids to score ('1 2 3' or '1,2,3'), instead of --text-file");
  tf_opt->excludes(id_opt);
  sc->add_option("--mode", mode, "forward | decode")->check(CLI::IsMember({"forward", "decode"}))->capture_default_str();
  sc->add_option("--out", out_path, "output .npy of float32 logits [T, V]")->required();
  sc->add_option("--device", device, "where to run: cpu | cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  sc->add_flag("--no-cuda-graphs", no_graphs, "on cuda, decode mode launches each step's kernels directly");
  add_quantize_option(sc, load_quant);

  // quantize / eval-ppl (tools/quantize.h)
  QuantizeCommandOptions quant_opts;
  auto* quant_cmd = add_quantize_command(app, quant_opts);
  EvalPplOptions ppl_opts;
  auto* ppl_cmd = add_eval_ppl_command(app, ppl_opts);

  // inspect
  auto* ins = app.add_subcommand("inspect", "Layer table, parameter counts, FLOPs and cache bytes per token");
  std::string what;
  int64_t ctx_len = 0;
  ins->add_option("path", what, "a YAML config, a checkpoint or a Hugging Face model directory")->required();
  ins->add_option("--context", ctx_len, "context length for FLOPs (default train.seq)");

  InitCommandOptions init_opts;
  auto* init_cmd = add_init_command(app, init_opts);

  // import hf / export hf
  auto* imp = app.add_subcommand("import", "Import a model from another format into a strata checkpoint");
  imp->require_subcommand(1);
  auto* imp_hf = imp->add_subcommand(
      "hf", "Hugging Face directory (config.json, *.safetensors, tokenizer.json) -> weights-only strata checkpoint");
  std::string hf_dir, out_file;
  bool quiet_io = false;
  imp_hf->add_option("dir", hf_dir, "Hugging Face model directory (save_pretrained layout)")->required();
  imp_hf->add_option("-o,--out", out_file, "strata checkpoint to write (.h5)")->required();
  imp_hf->add_flag("--quiet", quiet_io, "no progress lines");
  auto* exp = app.add_subcommand("export", "Export a strata model to another format");
  exp->require_subcommand(1);
  auto* exp_hf = exp->add_subcommand(
      "hf", "strata checkpoint -> Hugging Face directory that transformers' from_pretrained loads");
  std::string exp_ckpt, exp_dir, exp_dtype = "float32";
  double shard_gb = 5.0;
  exp_hf->add_option("ckpt", exp_ckpt, "checkpoint file, run directory or Hugging Face model directory")->required();
  exp_hf->add_option("-o,--out", exp_dir, "directory to write")->required();
  exp_hf->add_option("--dtype", exp_dtype, "weights dtype")
      ->check(CLI::IsMember({"float32", "bfloat16", "float16"}))
      ->capture_default_str();
  exp_hf->add_option("--max-shard-gb", shard_gb, "largest safetensors shard")->capture_default_str()->check(number_check(0, INFINITY, true));
  exp_hf->add_flag("--quiet", quiet_io, "no progress lines");

  ControlBenchOptions ctl_opts;
  auto* ctl_bench = add_control_command(app, ctl_opts);

  CLI11_PARSE(app, argc, argv);
  try {
    if (*tr) {
      if (help_config) {
        std::cout << config_help();
        return 0;
      }
      if (multirun.multirun) return run_multirun(cfg_path, overrides, multirun);
      if (cfg_path.empty()) throw InputError("train: a config file is required (e.g. strata train experiments/quickstart.yaml)");
      Config cfg = load_config(cfg_path, overrides);
      if (cfg.model.vocab != "bytes" && cfg.data.kind == "text")  // the synthetic kinds train on token ids
        throw InputError(fmt::format("train: model.vocab is '{}'; data.kind text is byte-level, so only vocab: bytes trains on it",
                                     cfg.model.vocab));
      TrainOptions o;
      o.resume = resume;
      o.stop_after = stop_after;
      o.quiet = quiet;
      o.hparams = hparam_keys;
      o.hparams_group = hparams_group;
      TrainResult r = train(cfg, to_yaml(cfg), o);
      if (r.rank == 0)  // data parallel: one summary for the job
        // val_loss < 0: no evaluation ran in this invocation (stopped before the first eval_every).
        fmt::print(stderr, "{} at step {}: train loss {:.4f}, {}, {:.0f} tokens/s, {:.1f}s; checkpoint {}\n",
                   r.interrupted ? "interrupted" : "done", r.step, r.train_loss,
                   r.val_loss >= 0 ? fmt::format("val loss {:.4f}", r.val_loss) : std::string("no val loss yet"),
                   r.tokens_per_s, r.seconds, r.last_checkpoint);
      return 0;
    }
    // generate / score: the device is checked before anything is read; the model is loaded on the
    // host (checkpoints and HF directories are read there) and then moved.
    const Device run_on = device == "cuda" ? Device::cuda : Device::cpu;
    if (*gen || *sc) require_device(run_on, "--device");
    gopts.decoder.cuda_graphs = !no_graphs;
    if (*quant_cmd) return run_quantize_command(quant_opts);
    if (*ppl_cmd) return run_eval_ppl_command(ppl_opts);
    if (*gen) {
      LoadedModel lm = load_model(checkpoint_arg(ckpt));
      apply_load_quant(*lm.model, load_quant);
      lm.model->params().to_device(run_on);
      const bool as_ids = print_ids || (!lm.tokenizer && lm.config.model.vocab != "bytes");
      std::vector<int32_t> ids;
      if (!chat.empty()) {
        ids = encode_chat(lm, chat_system, chat, ckpt);
      } else {
        if (!chat_system.empty()) throw InputError("generate: --system needs --chat");
        ids = prompt_ids.empty() ? encode_text(lm, prompt) : parse_ids(prompt_ids, "--prompt-ids", lm.model->vocab());
      }
      if (ids.empty()) throw InputError("generate: the prompt is empty");
      if (!ignore_eos) gopts.stop_ids = lm.eos_ids;
      if (!as_ids && chat.empty()) std::fputs(prompt_ids.empty() ? prompt.c_str() : decode_text(lm, ids).c_str(), stdout);
      generate(*lm.model, ids, gopts, [&](int32_t t) {
        if (as_ids) std::fputs((std::to_string(t) + " ").c_str(), stdout);
        else std::fputs(decode_text(lm, {t}).c_str(), stdout);
        std::fflush(stdout);
      });
      std::fputc('\n', stdout);
      return 0;
    }
    if (*sc) {
      if (text_file.empty() == ids_file.empty()) throw InputError("score: give --text-file or --ids-file");
      LoadedModel lm = load_model(checkpoint_arg(ckpt));
      apply_load_quant(*lm.model, load_quant);
      lm.model->params().to_device(run_on);
      std::vector<int32_t> ids = ids_file.empty() ? encode_text(lm, read_file(text_file, "--text-file"))
                                                  : parse_ids(read_file(ids_file, "--ids-file"), ids_file, lm.model->vocab());
      if (ids.empty()) throw InputError(fmt::format("'{}' is empty", ids_file.empty() ? text_file : ids_file));
      auto logits = score(*lm.model, ids, mode == "forward" ? ScoreMode::forward : ScoreMode::decode, gopts.decoder);
      write_npy(out_path, logits, {int64_t(ids.size()), lm.model->vocab()});
      fmt::print(stderr, "wrote {} ({} x {} logits, mode {})\n", out_path, ids.size(), lm.model->vocab(), mode);
      return 0;
    }
    if (*imp_hf) {
      HfLog log = quiet_io ? HfLog() : HfLog(log_line);
      LoadedModel lm = load_hf_model(hf_dir, log);
      save_weights_only(lm, out_file);
      if (!quiet_io)
        log_line(fmt::format("wrote {} ({} tensors, vocab: {})", out_file, lm.model->params().infos().size(), lm.config.model.vocab));
      return 0;
    }
    if (*exp_hf) {
      HfLog log = quiet_io ? HfLog() : HfLog(log_line);
      LoadedModel lm = load_model(checkpoint_arg(exp_ckpt));
      HfExportOptions o;
      o.dtype = exp_dtype;
      o.max_shard_bytes = uint64_t(shard_gb * 1e9);
      HfExportResult r = export_hf(lm, exp_dir, o, log);
      if (!quiet_io) log_line(fmt::format("wrote {} ({}, {} tensors)", exp_dir, hf_arch_info(r.arch).class_name, r.tensors));
      return 0;
    }
    if (*ctl_bench) return run_control_bench(ctl_opts);
    if (*sweep) return run_sweep_command(sweep, sweep_opts);
    if (*serve) return run_serve_command(serve_opts);
    if (*init_cmd) return run_init_command(init_opts);
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
