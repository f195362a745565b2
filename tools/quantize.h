#pragma once
// `strata quantize` (an fp32 checkpoint -> a weight-only int8 / int4 one) and `strata eval-ppl`
// (perplexity of a text, and decode speed at batch 1, optionally quantising at load): issue 13.
#include <CLI/CLI.hpp>

#include <string>

namespace strata {

class Model;

// --quantize and --activations (see add_quantize_option below).
struct LoadQuant {
  int bits = 0;  // 0: as loaded; 8 / 4: quantise the fp32 weights at load
  bool head = false;  // --quantize-head: the LM head too, at int8
  std::string activations = "fp32";
};

struct QuantizeCommandOptions {
  std::string ckpt, out;
  int bits = 8;
  bool head = false;  // --quantize-head
  bool quiet = false;
};
CLI::App* add_quantize_command(CLI::App& app, QuantizeCommandOptions& o);
int run_quantize_command(const QuantizeCommandOptions& o);

struct EvalPplOptions {
  std::string ckpt, text_file, device = "cpu";
  LoadQuant quant;            // --quantize, --activations
  int64_t context = 256;      // tokens per window (non-overlapping windows)
  int64_t max_tokens = 0;     // 0: the whole text
  int64_t batch = 4;          // windows per forward
  int64_t decode_tokens = 0;  // > 0: also time this many batch-1 decode steps
  bool bytes = false;         // the text as byte ids whatever the model's vocabulary says
  bool quiet = false;
};
CLI::App* add_eval_ppl_command(CLI::App& app, EvalPplOptions& o);
int run_eval_ppl_command(const EvalPplOptions& o);

// --quantize 8|4 and --activations fp32|int8 on a loaded model's subcommand (generate, score,
// serve, eval-ppl), and applying them to the loaded model (before it moves to its device).
void add_quantize_option(CLI::App* cmd, LoadQuant& q);
void apply_load_quant(Model& model, const LoadQuant& q);

}  // namespace strata
