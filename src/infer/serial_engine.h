#pragma once
// The baseline Engine: one request at a time through a Decoder of batch 1, exactly the calls that
// generate() makes (prefill, then one step per token, the request's own Sampler and Rng), so a
// request's tokens equal generate()'s for the same prompt, sampling parameters and seed. Requests
// wait in a FIFO queue; each step() either starts the next request (prefill and its first sample)
// or delivers one token and decodes the next, so cancellation takes effect between tokens.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "core/rng.h"
#include "infer/decoder.h"
#include "infer/engine.h"
#include "models/model.h"

namespace strata {

struct SerialEngineOptions {
  int64_t max_queue = 64;      // waiting requests beyond the running one; more: EngineBusy
  int64_t max_context = 4096;  // prompt + max_tokens of one request (the Decoder's cache length)
  DecoderOptions decoder;
};

class SerialEngine : public Engine {
 public:
  explicit SerialEngine(Model& model, SerialEngineOptions opts = {});
  ~SerialEngine() override;

  int64_t submit(RequestParams params, TokenCallback on_event) override;
  void cancel(int64_t id) override;
  bool step() override;
  void wait_for_work(std::chrono::milliseconds timeout) override;
  EngineStats stats() const override;
  int64_t max_context() const override { return opts_.max_context; }

 private:
  struct Request {
    int64_t id = 0;
    RequestParams params;
    TokenCallback on_event;
  };
  struct Running {
    Request req;
    std::unique_ptr<Decoder> dec;
    std::unique_ptr<Sampler> sampler;
    Rng rng{0};
    std::vector<float> logits;
    int64_t generated = 0;  // tokens delivered so far
    int32_t next = -1;      // sampled, not yet delivered
  };
  void start(Request req);
  void advance();                             // deliver cur_->next, then decode the one after
  void finish_with(Request& req, FinishReason why, const std::string& error = "");  // a final event with no token

  Model& model_;
  SerialEngineOptions opts_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Request> queue_;       // guarded by mu_
  std::vector<int64_t> cancelled_;  // guarded by mu_: ids to cancel at the next step
  bool work_ = false;               // guarded by mu_: submit/cancel since the last wait
  int64_t next_id_ = 1;             // guarded by mu_
  std::optional<Running> cur_;      // the driving thread's
  std::atomic<int64_t> running_{0}, prompt_tokens_{0}, generated_tokens_{0};
};

}  // namespace strata
