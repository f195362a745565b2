#pragma once
// `strata serve --ckpt C --port P`: the OpenAI-compatible server (src/serve/server.h) over a model
// loaded the way `strata generate` loads one (a checkpoint, a run directory or a Hugging Face directory).
#include <string>

#include "quantize.h"

namespace CLI {
class App;
}

namespace strata {

struct ServeCommandOptions {
  std::string ckpt, host = "127.0.0.1", model_name, engine = "batch", device = "cpu";
  int port = 8000;
  int64_t max_queue = 64, max_prompt_tokens = 4096, max_tokens = 2048, max_context = 0;
  int64_t max_running = 64, max_batch_tokens = 512, cache_mib = 256, page_size = 16, row_tile = 8, snapshot_slots = -1;
  double timeout_s = 600;
  int threads = 0, http_threads = 32;
  LoadQuant quant;  // --quantize 8|4, --activations
  bool quiet = false;
};

CLI::App* add_serve_command(CLI::App& app, ServeCommandOptions& o);
int run_serve_command(const ServeCommandOptions& o);

}  // namespace strata
