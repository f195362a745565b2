#pragma once
// The serving engine's contract, between whoever drives it (strata serve, bench/serve, tests) and
// whatever schedules the requests (infer/batch_engine.h: continuous batching over paged KV and SSM
// state slots; infer/serial_engine.h: one request at a time through Decoder, the baseline).
//
// Threads: submit() and cancel() may be called from any thread; step() and wait_for_work() from one
// driving thread only, which is also the thread every callback runs on. A callback must not block:
// it hands tokens to a queue (an HTTP stream) and returns.
#include <chrono>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "infer/sampler.h"

namespace strata {

enum class FinishReason : uint8_t {
  none,       // more tokens follow
  length,     // max_tokens generated
  stop,       // a stop id was generated, or the callback returned false (stop string, client gone)
  cancelled,  // cancel(id)
  error,      // TokenEvent::error says why; the engine goes on with the other requests
};
const char* finish_reason_name(FinishReason r);  // "length", "stop", ... (OpenAI's finish_reason)

struct RequestParams {
  std::vector<int32_t> prompt;  // at least one id
  int64_t max_tokens = 16;      // >= 1
  SamplerConfig sampler;        // temperature 0 = greedy
  uint64_t seed = 0;            // the request's own sampling stream: results never depend on other requests
  std::vector<int32_t> stop_ids;  // generation ends after emitting one of these (it is reported, then finish = stop)
};

struct TokenEvent {
  int64_t request = -1;
  int32_t token = -1;  // the new token; -1 in a final event that carries none (cancelled, error)
  FinishReason finish = FinishReason::none;  // != none: the request's last event
  std::string error;                         // finish == error: the reason
};
// Returns false to end the request now (reported as finish = stop in one more event with token -1).
using TokenCallback = std::function<bool(const TokenEvent&)>;

struct EngineStats {
  int64_t waiting = 0, running = 0;              // requests queued / holding memory
  int64_t preemptions = 0;                       // requests evicted and later recomputed, total
  int64_t kv_pages_used = 0, kv_pages_total = 0;  // attention (and MLA) KV pages
  int64_t state_slots_used = 0, state_slots_total = 0;  // Mamba conv + SSM state slots
  int64_t prompt_tokens = 0, prefix_hit_tokens = 0;     // totals: prompt tokens submitted / served from the prefix cache
  int64_t generated_tokens = 0;                          // total
};

class Engine {
 public:
  virtual ~Engine() = default;
  // Queues a request; returns its id (> 0). InputError when it can never run (empty prompt, bad
  // sampling parameters, prompt + max_tokens beyond the engine's context limit); the queue being
  // full is EngineBusy. Tokens arrive through `on_event`, the last one with finish != none.
  virtual int64_t submit(RequestParams params, TokenCallback on_event) = 0;
  // Ends a queued or running request (its callback sees finish = cancelled); unknown or finished ids are ignored.
  virtual void cancel(int64_t id) = 0;
  // One iteration (admit, schedule, run the model once, sample, deliver). False when there was nothing to do.
  virtual bool step() = 0;
  // Blocks until submit() or cancel() is called from another thread, or `timeout` passes.
  virtual void wait_for_work(std::chrono::milliseconds timeout) = 0;
  virtual EngineStats stats() const = 0;
  // The longest prompt + max_tokens a request may ask for.
  virtual int64_t max_context() const = 0;
};

// submit() when the engine's queue is full (the server answers 429).
struct EngineBusy : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace strata
