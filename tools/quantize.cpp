#include "quantize.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/arena.h"
#include "core/error.h"
#include "infer/decoder.h"
#include "infer/loaded_model.h"
#include "load/model_loader.h"
#include "models/quantize.h"
#include "train/checkpoint.h"
#include "train/config_load.h"
#include "train/progress.h"

namespace strata {

namespace fs = std::filesystem;

namespace {
constexpr const char* kHeadHelp =
    "also quantise the LM head (the embedding matrix when tied) to int8: in a small model the largest matrix, most "
    "of the bytes read per decoded token (llama.cpp's Q8_0 quantises its output matrix too)";
}  // namespace

void add_quantize_option(CLI::App* cmd, LoadQuant& q) {
  cmd->add_option("--quantize", q.bits,
                  "quantise the fp32 weights at load: 8 (int8 per output row) or 4 (int4, groups of 32); "
                  "see strata quantize")
      ->check(CLI::IsMember({8, 4}));
  cmd->add_flag("--quantize-head", q.head, kHeadHelp);
  cmd->add_option("--activations", q.activations,
                  "with quantised weights: fp32 keeps the activations in fp32; int8 quantises them per 32 inputs "
                  "before each quantised product (llama.cpp's Q8 activations; the AVX-512 VNNI path, faster, "
                  "slightly less exact)")
      ->check(CLI::IsMember({"fp32", "int8"}))
      ->capture_default_str();
}

void apply_load_quant(Model& model, const LoadQuant& q) {
  if (q.head && !q.bits) throw InputError("--quantize-head goes with --quantize 8|4");
  if (q.bits) quantize_model(model, q.bits, q.head);
  set_activations(model, q.activations);
}

CLI::App* add_quantize_command(CLI::App& app, QuantizeCommandOptions& o) {
  auto* q = app.add_subcommand(
      "quantize",
      "fp32 checkpoint (or Hugging Face directory) -> weight-only int8 / int4 checkpoint for generate / score / eval-ppl. "
      "Quantised: the blocks' projections (attention, MLA, Mamba, MLP, MoE experts); kept fp32: embeddings, LM head, "
      "router, norms, conv, SSM parameters");
  q->add_option("ckpt", o.ckpt, "checkpoint file, run directory or Hugging Face model directory")->required();
  q->add_option("-o,--out", o.out, "quantised checkpoint to write (.h5)")->required();
  q->add_option("--bits", o.bits, "8: int8, one scale per output row; 4: int4, one scale per 32 inputs (weights whose "
                                  "input size is not a multiple of 32 stay int8)")
      ->check(CLI::IsMember({8, 4}))
      ->capture_default_str();
  q->add_flag("--quantize-head", o.head, kHeadHelp);
  q->add_flag("--quiet", o.quiet, "no summary line");
  return q;
}

int run_quantize_command(const QuantizeCommandOptions& o) {
  std::string skipped;
  const std::string path = resolve_checkpoint(o.ckpt, &skipped);
  if (!skipped.empty()) fmt::print(stderr, "warning: skipped unusable checkpoints in '{}': {}; using {}\n", o.ckpt, skipped, path);
  LoadedModel lm = load_model(path);
  if (lm.model->quantized()) throw InputError(fmt::format("'{}' is quantised already: quantise its fp32 checkpoint", path));
  const ParamStore& ps = lm.model->params();
  Checkpoint ck;
  ck.quant = quantize_weights(ps, o.bits, o.head);
  std::vector<std::string> qnames;
  for (const QuantTensor& t : ck.quant) qnames.push_back(t.name);
  CheckpointView v;
  v.config_yaml = to_yaml(lm.config);
  int64_t fp32_bytes = 0, kept_bytes = 0, int8_fallback = 0;
  for (const ParamInfo& p : ps.infos()) {
    fp32_bytes += p.numel * 4;
    if (std::find(qnames.begin(), qnames.end(), p.name) != qnames.end()) continue;
    v.params.push_back({p.name, p.shape, ps.flat() + p.offset});
    kept_bytes += p.numel * 4;
  }
  int64_t q_bytes = 0;
  for (const QuantTensor& t : ck.quant) {
    q_bytes += int64_t(t.q.size() + t.scales.size() * 4);
    int8_fallback += t.bits != o.bits && !is_head_weight(ps.infos()[size_t(ps.find(t.name))]);
  }
  v.state.step = lm.step;
  v.tokenizer_json = lm.tokenizer_json;
  v.hf_config_json = lm.hf_config_json;
  v.quant = &ck.quant;
  save_checkpoint(o.out, v);
  verify_checkpoint(o.out);  // what was written reads back, checksums and all
  if (!o.quiet) {
    std::error_code ec;
    const auto in_size = fs::is_regular_file(path, ec) ? int64_t(fs::file_size(path, ec)) : int64_t(-1);
    const auto out_size = int64_t(fs::file_size(o.out, ec));
    fmt::print(stderr,
               "wrote {}: {} weights at int{}{}; weights {:.2f} MB -> {:.2f} MB ({:.2f} MB quantised + {:.2f} MB fp32 kept); "
               "file {:.2f} MB{}\n",
               o.out, ck.quant.size(), o.bits,
               int8_fallback ? fmt::format(" ({} at int8: input size not a multiple of 32)", int8_fallback) : "",
               fp32_bytes / 1e6, (q_bytes + kept_bytes) / 1e6, q_bytes / 1e6, kept_bytes / 1e6, out_size / 1e6,
               in_size > 0 ? fmt::format(" (input file {:.2f} MB)", in_size / 1e6) : "");
  }
  return 0;
}

CLI::App* add_eval_ppl_command(CLI::App& app, EvalPplOptions& o) {
  auto* e = app.add_subcommand("eval-ppl",
                               "Perplexity of a text under a model (non-overlapping windows), optionally quantised at "
                               "load; with --decode-tokens, also batch-1 decode speed");
  e->add_option("--ckpt", o.ckpt, "checkpoint file, run directory or Hugging Face model directory")->required();
  e->add_option("--text-file", o.text_file, "text to score (through the model's tokenizer, or bytes)")->required();
  add_quantize_option(e, o.quant);
  e->add_option("--context", o.context, "tokens per window")->capture_default_str()->check(CLI::Range(int64_t(2), int64_t(1) << 20));
  e->add_option("--max-tokens", o.max_tokens, "score only the first N tokens of the text (0 = all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  e->add_option("--batch", o.batch, "windows per forward pass")->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(4096)));
  e->add_option("--decode-tokens", o.decode_tokens, "also time this many decode steps at batch 1 (0 = skip)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  e->add_option("--device", o.device, "where to run: cpu | cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  e->add_flag("--bytes", o.bytes,
              "read the text as byte ids (0..255) whatever the model's vocabulary: a byte-level model exported to "
              "Hugging Face without a tokenizer and imported back has vocab: ids");
  e->add_flag("--quiet", o.quiet, "no progress bar");
  return e;
}

int run_eval_ppl_command(const EvalPplOptions& o) {
  const Device dev = o.device == "cuda" ? Device::cuda : Device::cpu;
  require_device(dev, "--device");
  std::string skipped;
  LoadedModel lm = load_model(resolve_checkpoint(o.ckpt, &skipped));
  apply_load_quant(*lm.model, o.quant);
  Model& model = *lm.model;
  model.params().to_device(dev);
  std::ifstream f(o.text_file, std::ios::binary);
  if (!f) throw InputError(fmt::format("--text-file: cannot read '{}'", o.text_file));
  std::stringstream ss;
  ss << f.rdbuf();
  if (o.bytes && model.vocab() < 256)
    throw InputError(fmt::format("--bytes: the model's vocabulary has {} ids, fewer than the 256 byte values", model.vocab()));
  std::vector<int32_t> ids = o.bytes ? encode_bytes(ss.str()) : encode_text(lm, ss.str());
  if (o.max_tokens > 0 && int64_t(ids.size()) > o.max_tokens) ids.resize(size_t(o.max_tokens));
  const int64_t T = o.context, windows = (int64_t(ids.size()) - 1) / T;
  if (windows < 1)
    throw InputError(fmt::format("--text-file: {} tokens, fewer than one window of --context {} plus one", ids.size(), T));
  // "int4" also when a few weights had to stay int8 (input size not a multiple of 32).
  const char* weights = model.quantized() ? (model.quantized()->fewest_bits() == 4 ? "int4" : "int8") : "fp32";

  Arena arena(dev);
  Progress progress(windows, 0, 10);
  double nll = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t w0 = 0; w0 < windows; w0 += o.batch) {
    const int64_t B = std::min(o.batch, windows - w0);
    std::vector<int32_t> x(size_t(B * T)), y(size_t(B * T));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) {
        x[size_t(b * T + t)] = ids[size_t((w0 + b) * T + t)];
        y[size_t(b * T + t)] = ids[size_t((w0 + b) * T + t + 1)];
      }
    arena.reset();
    Ctx ctx{dev, &arena, false};
    nll += double(model.eval_loss(ctx, x.data(), y.data(), B, T)) * double(B * T);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!o.quiet)
      progress.update(w0 + B, float(nll / double((w0 + B) * T)), 0.0f, double((w0 + B) * T) / secs,
                      fmt::format("ppl {:.3f}", std::exp(nll / double((w0 + B) * T))));
  }
  if (!o.quiet) progress.finish();
  const int64_t scored = windows * T;
  const double ppl = std::exp(nll / double(scored));
  double decode_tps = 0, decode_cpu_tps = 0;
  if (o.decode_tokens > 0) {
    Decoder dec(model, 1, 1 + o.decode_tokens, {});
    std::vector<float> logits(size_t(model.vocab()));
    int32_t tok = ids[0];
    dec.prefill(&tok, 1, logits.data());
    const auto d0 = std::chrono::steady_clock::now();
    const std::clock_t c0 = std::clock();
    for (int64_t i = 0; i < o.decode_tokens; ++i) {
      tok = ids[size_t((i + 1) % int64_t(ids.size()))];
      dec.step(&tok, logits.data());
    }
    decode_tps = double(o.decode_tokens) / std::chrono::duration<double>(std::chrono::steady_clock::now() - d0).count();
    // Per second of this process's CPU time: on a shared machine the wall clock also counts the
    // time other processes held the cores (with OMP_NUM_THREADS=1, CPU time is the work itself).
    decode_cpu_tps = double(o.decode_tokens) / (double(std::clock() - c0) / CLOCKS_PER_SEC);
  }
  const int64_t qbytes = model.quantized() ? model.quantized()->bytes() : 0;
  int64_t fp32_kept = 0;
  for (const ParamInfo& p : model.params().infos()) fp32_kept += p.numel * 4;
  // Weight bytes as stored: quantised bytes + the fp32 parameters that are not quantised.
  if (model.quantized()) fp32_kept -= model.quantized()->weights() * 4;
  const char* acts = model.quantized() && model.quantized()->int8_activations() ? "int8" : "fp32";
  fmt::print("weights={} head={} activations={} tokens={} context={} nll={:.5f} ppl={:.4f} weight_bytes={} decode_tok_s={:.1f} "
             "decode_tok_per_cpu_s={:.1f}\n",
             weights, head_quantized(model) ? "int8" : "fp32", acts, scored, T, nll / double(scored), ppl, qbytes + fp32_kept, decode_tps, decode_cpu_tps);
  return 0;
}

}  // namespace strata
