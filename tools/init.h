#pragma once
// `strata init`: a config's freshly initialised model written as a checkpoint, without training.
// For serving and benchmarking at a size where even one training step (AdamW moments: 3x the weights)
// would not fit, e.g. bench/serve/hybrid_capacity.py --measure on the 1B configs.
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace strata {

struct InitCommandOptions {
  std::string config;
  std::vector<std::string> overrides;
  std::string out;
  bool quiet = false;
};

CLI::App* add_init_command(CLI::App& app, InitCommandOptions& o);
int run_init_command(const InitCommandOptions& o);

}  // namespace strata
