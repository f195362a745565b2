#include "serve/engine_factory.h"

#include "core/error.h"
#include "infer/serial_engine.h"

namespace strata {

std::vector<std::string> engine_kinds() { return {"serial"}; }

std::unique_ptr<Engine> make_engine(const std::string& kind, Model& model, const EngineSettings& s) {
  if (kind == "serial") {
    SerialEngineOptions o;
    o.max_queue = s.max_queue;
    o.max_context = s.max_context;
    return std::make_unique<SerialEngine>(model, o);
  }
  std::string valid;
  for (auto& k : engine_kinds()) valid += (valid.empty() ? "" : ", ") + k;
  throw InputError(fmt::format("unknown engine '{}': valid engines are {}", kind, valid));
}

}  // namespace strata
