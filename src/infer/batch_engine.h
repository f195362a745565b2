#pragma once
// The continuous-batching engine (issue 13): every step() is one RowBatch through the ModelRunner,
// holding one decode row for each running sequence and then chunks of prompts still being
// prefilled, under a token budget. Memory is the runner's: KV pages and Mamba state slots, both
// handed out from CachedPools that double as the prefix cache. docs/serving.md ("Engine") gives
// the policy; in short:
// - Admission (first come, first served): a request is admitted when a state slot (Mamba models)
//   and pages for all of its known tokens (the prompt; after a pre-emption, prompt + generated)
//   can be reserved, minus the prefix found in the cache. Later pages are taken one at a time as
//   decoding crosses a page boundary.
// - Pre-emption: when a decode row needs a page and none is free or evictable, the most recently
//   admitted running request loses its memory and goes back to the front of the queue; on
//   re-admission it recomputes its prompt and generated tokens (its cached pages usually survive,
//   so most of that is a prefix hit) and goes on with its own sampler and Rng, so its tokens are
//   those it would have produced without the pre-emption.
// - Prefix cache: every full page is published under the chain hash of the tokens up to its end
//   (infer/prefix_hash.h). Mamba state is snapshotted into a free slot (copy_state) when a
//   sequence's state reaches a snapshot boundary (every snapshot_interval_pages pages, and the
//   last full page of its prompt); prefill chunks end at those boundaries so the state there exists.
//   A new request restarts at the longest prefix of whole pages whose pages (attention) and
//   snapshot (Mamba) are all cached, leaving at least its last prompt token to compute.
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "infer/cached_pool.h"
#include "infer/engine.h"
#include "infer/row_batch.h"

namespace strata {

struct BatchEngineOptions {
  int64_t max_batch_tokens = 512;  // rows per step: decode rows plus prefill chunks
  int64_t max_running = 256;       // sequences holding memory at once (at most max_batch_tokens)
  int64_t max_queue = 1024;        // requests waiting (not running) before submit() throws EngineBusy
  bool prefix_caching = true;
  // Pages left free after admitting a request while others run, so that the running ones can cross
  // their next page boundaries without pre-empting the newcomer at once; -1: 1% of the pool (vLLM's).
  int64_t admission_watermark_pages = -1;
  // Mamba models: snapshot the state every this many pages (and at each prompt's last full page).
  // Smaller: more prefix hits, but prefill chunks are cut there and snapshots churn the free slots.
  int64_t snapshot_interval_pages = 16;
  // Longest prompt + max_tokens; 0: the pools' limit (min(max_pages, num_pages) * page_size), and
  // for a model without attention 1 << 20 unless max_pages is set.
  int64_t max_context = 0;
  // Block size of the prefix keys when the model has no pages (pure Mamba): 0 = pools().page_size.
  int64_t prefix_block = 0;
};

class BatchEngine : public Engine {
 public:
  BatchEngine(ModelRunner& runner, BatchEngineOptions opts = {});
  ~BatchEngine() override;
  BatchEngine(const BatchEngine&) = delete;
  BatchEngine& operator=(const BatchEngine&) = delete;

  int64_t submit(RequestParams params, TokenCallback on_event) override;
  void cancel(int64_t id) override;
  bool step() override;
  void wait_for_work(std::chrono::milliseconds timeout) override;
  EngineStats stats() const override;
  int64_t max_context() const override { return max_context_; }

 private:
  struct Request;
  using Owned = std::unique_ptr<Request>;

  bool take_inbox();  // moves submitted requests to the queue and applies cancellations
  bool try_admit(Request& r);
  bool reserve_pages(Request& r, int64_t tokens);  // pages for `tokens` tokens, pre-empting; false if r was
  void preempt_newest();
  void release_memory(Request& r);
  uint64_t block_key(Request& r, int64_t block);  // key of the prefix ending with block `block`
  bool snapshot_wanted(const Request& r, int64_t boundary) const;
  int64_t chunk_end(Request& r, int64_t budget);
  void after_run(Request& r, int64_t rows, const float* logits);
  bool deliver(Request& r, const TokenEvent& ev);  // the callback's answer (false when it threw)
  void finish(Request& r, FinishReason why, int32_t token, std::string error = {});
  void drop_finished();
  void publish_stats();

  ModelRunner& runner_;
  BatchEngineOptions opts_;
  PoolSizes pools_;
  bool uses_pages_ = false, uses_slots_ = false;
  int64_t block_ = 16;  // tokens per page and per prefix key
  int64_t max_context_ = 0;
  int64_t watermark_ = 0;
  int64_t vocab_ = 0;
  CachedPool pages_;
  CachedPool slots_;

  // The stepping thread's own state.
  std::deque<Owned> waiting_;
  std::vector<Owned> running_;  // in admission order: the back is pre-empted first
  std::vector<float> logits_;
  EngineStats counters_;        // the totals (prompt, hit, generated, pre-emptions)

  // Shared with submit() / cancel() / stats().
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Owned> inbox_;
  std::vector<int64_t> cancels_;
  int64_t next_id_ = 1;
  int64_t queued_ = 0;     // inbox_ + waiting_, as of the last step
  EngineStats published_;  // stats() answers this
};

}  // namespace strata
