#include "serve/engine_factory.h"

#include "core/error.h"
#include "infer/batch_engine.h"
#include "infer/model_runner.h"
#include "infer/serial_engine.h"

namespace strata {
namespace {

// BatchEngine borrows its runner; the server holds one Engine, so this owns both.
class OwningBatchEngine final : public Engine {
 public:
  OwningBatchEngine(std::unique_ptr<ModelRunner> runner, const BatchEngineOptions& o)
      : runner_(std::move(runner)), engine_(*runner_, o) {}
  int64_t submit(RequestParams p, TokenCallback cb) override { return engine_.submit(std::move(p), std::move(cb)); }
  void cancel(int64_t id) override { engine_.cancel(id); }
  bool step() override { return engine_.step(); }
  void wait_for_work(std::chrono::milliseconds t) override { engine_.wait_for_work(t); }
  EngineStats stats() const override { return engine_.stats(); }
  int64_t max_context() const override { return engine_.max_context(); }

 private:
  std::unique_ptr<ModelRunner> runner_;
  BatchEngine engine_;
};

}  // namespace

std::vector<std::string> engine_kinds() { return {"batch", "serial"}; }

PoolSizes batch_pool_sizes(const Model& model, const EngineSettings& s) {
  int64_t per_token = 0, per_seq = 0;
  for (const auto& layer : model.layers()) {
    per_token += layer.block->cache_bytes_per_token();
    per_seq += layer.block->cache_bytes_fixed();
  }
  PoolSizes p;
  p.page_size = s.page_size;
  p.max_pages = (s.max_context + s.page_size - 1) / s.page_size;
  const int64_t budget = s.cache_mib << 20;
  const int64_t snapshots = s.snapshot_slots >= 0 ? s.snapshot_slots : (s.max_running + 3) / 4;
  if (per_seq > 0) p.num_state_slots = s.max_running + snapshots;
  const int64_t left = budget - p.num_state_slots * per_seq;
  const int64_t page_bytes = per_token * s.page_size;
  if (page_bytes > 0) p.num_pages = left > 0 ? left / page_bytes : 0;
  if (left < 0 || (page_bytes > 0 && p.num_pages < p.max_pages))
    throw InputError(fmt::format("--cache-mib {}: too small for {} state slots of {} bytes and one sequence of {} tokens "
                                 "({} bytes of KV per token); raise it, or lower --max-running or the context",
                                 s.cache_mib, p.num_state_slots, per_seq, s.max_context, per_token));
  return p;
}

std::unique_ptr<Engine> make_engine(const std::string& kind, Model& model, const EngineSettings& s) {
  if (kind == "serial") {
    SerialEngineOptions o;
    o.max_queue = s.max_queue;
    o.max_context = s.max_context;
    return std::make_unique<SerialEngine>(model, o);
  }
  if (kind == "batch") {
    BatchEngineOptions o;
    o.max_queue = s.max_queue;
    o.max_context = s.max_context;
    o.max_running = s.max_running;
    o.max_batch_tokens = s.max_batch_tokens;
    RunnerOptions ro;
    ro.row_tile = s.row_tile;
    return std::make_unique<OwningBatchEngine>(make_model_runner(model, batch_pool_sizes(model, s), ro), o);
  }
  std::string valid;
  for (auto& k : engine_kinds()) valid += (valid.empty() ? "" : ", ") + k;
  throw InputError(fmt::format("unknown engine '{}': valid engines are {}", kind, valid));
}

}  // namespace strata
