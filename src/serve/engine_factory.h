#pragma once
// The Engine `strata serve` runs, by name: "serial" (infer/serial_engine.h, one request at a time)
// or, once it is built, "batch" (continuous batching). One place to add an engine to the CLI.
#include <memory>
#include <string>
#include <vector>

#include "infer/engine.h"
#include "models/model.h"

namespace strata {

struct EngineSettings {
  int64_t max_queue = 64;      // waiting requests; beyond: EngineBusy (HTTP 429)
  int64_t max_context = 4096;  // prompt + max_tokens of one request
};

// The names make_engine accepts, for --help and messages.
std::vector<std::string> engine_kinds();
// InputError naming the valid kinds for an unknown one.
std::unique_ptr<Engine> make_engine(const std::string& kind, Model& model, const EngineSettings& settings);

}  // namespace strata
