#include "init.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "infer/loaded_model.h"
#include "interop/hf_import.h"
#include "train/checkpoint.h"
#include "train/config_load.h"

namespace strata {

CLI::App* add_init_command(CLI::App& app, InitCommandOptions& o) {
  auto* c = app.add_subcommand("init",
                               "Write a config's randomly initialised model (train.seed) as a checkpoint, without "
                               "training: weights only, step 0; serve, generate, quantize and inspect read it");
  c->add_option("config", o.config, "experiment YAML, e.g. experiments/serving/jamba_1b.yaml")->required();
  c->add_option("overrides", o.overrides, "overrides: a.b=v (set), +a.b=v (add), ~a.b (remove)");
  c->add_option("-o,--out", o.out, "checkpoint to write (.h5)")->required();
  c->add_flag("--quiet", o.quiet, "no summary line");
  return c;
}

int run_init_command(const InitCommandOptions& o) {
  LoadedModel lm;
  lm.config = load_config(o.config, o.overrides);
  lm.model = std::make_unique<Model>(lm.config.model, lm.config.train.seed);
  save_weights_only(lm, o.out);
  verify_checkpoint(o.out);  // what was written reads back, checksums and all
  if (!o.quiet) {
    int64_t n = 0;
    for (const ParamInfo& p : lm.model->params().infos()) n += p.numel;
    fmt::print(stderr, "wrote {}: {} parameters ({:.1f} MB fp32), pattern '{}', seed {}\n", o.out, n, n * 4 / 1e6,
               lm.model->layer_pattern(), lm.config.train.seed);
  }
  return 0;
}

}  // namespace strata
