#include "infer/batch_engine.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "infer/prefix_hash.h"

namespace strata {

struct BatchEngine::Request {
  int64_t id = 0;
  RequestParams params;
  TokenCallback on_event;
  Sampler sampler;
  Rng rng;                       // kept across pre-emption: the recomputed request samples on where it was
  std::vector<int32_t> tokens;   // the prompt, then every generated token
  int64_t prompt_len = 0;
  int64_t generated = 0;
  std::vector<uint64_t> keys;    // keys[i]: prefix key of tokens [0, (i+1) * block), computed on demand
  // Memory, while running.
  std::vector<int32_t> pages;    // page of positions [i * block, (i+1) * block)
  int32_t slot = -1;
  int64_t computed = 0;          // tokens in its KV pages / consumed by its state
  int64_t published = 0;         // leading pages in the prefix cache (or found there)
  bool done = false;

  Request(int64_t id_, RequestParams p, TokenCallback cb)
      : id(id_), params(std::move(p)), on_event(std::move(cb)), sampler(params.sampler), rng(params.seed),
        tokens(params.prompt), prompt_len(int64_t(params.prompt.size())) {}
  int64_t pending() const { return int64_t(tokens.size()) - computed; }
};

BatchEngine::BatchEngine(ModelRunner& runner, BatchEngineOptions opts)
    : runner_(runner),
      opts_(opts),
      pools_(runner.pools()),
      uses_pages_(runner.uses_pages()),
      uses_slots_(runner.uses_state_slots()),
      vocab_(runner.vocab()),
      pages_(runner.uses_pages() ? runner.pools().num_pages : 0),
      slots_(runner.uses_state_slots() ? runner.pools().num_state_slots : 0) {
  if (opts_.max_batch_tokens < 1 || opts_.max_running < 1 || opts_.max_queue < 1 || opts_.snapshot_interval_pages < 1 ||
      opts_.max_context < 0 || opts_.prefix_block < 0)
    throw InputError(fmt::format(
        "engine options: max_batch_tokens ({}), max_running ({}), max_queue ({}) and snapshot_interval_pages ({}) must "
        "be >= 1, max_context ({}) and prefix_block ({}) >= 0",
        opts_.max_batch_tokens, opts_.max_running, opts_.max_queue, opts_.snapshot_interval_pages, opts_.max_context,
        opts_.prefix_block));
  // Every running sequence must get its decode row in every step, or the last ones would starve.
  opts_.max_running = std::min(opts_.max_running, opts_.max_batch_tokens);
  STRATA_CHECK(uses_pages_ || uses_slots_, "engine: the model has neither attention nor Mamba layers");
  STRATA_CHECK(vocab_ >= 1, "engine: vocab {}", vocab_);
  block_ = (!uses_pages_ && opts_.prefix_block > 0) ? opts_.prefix_block : pools_.page_size;
  STRATA_CHECK(block_ >= 1, "engine: page_size {}", pools_.page_size);
  if (uses_pages_)
    STRATA_CHECK(pools_.num_pages >= 1 && pools_.max_pages >= 1, "engine: {} KV pages, {} per sequence",
                 pools_.num_pages, pools_.max_pages);
  if (uses_slots_) STRATA_CHECK(pools_.num_state_slots >= 1, "engine: {} state slots", pools_.num_state_slots);
  int64_t limit = uses_pages_ ? std::min(pools_.max_pages, pools_.num_pages) * pools_.page_size
                  : pools_.max_pages > 0 ? pools_.max_pages * pools_.page_size
                                         : int64_t(1) << 20;
  max_context_ = opts_.max_context > 0 ? std::min(opts_.max_context, limit) : limit;
  watermark_ = opts_.admission_watermark_pages >= 0 ? opts_.admission_watermark_pages : pages_.total() / 100;
  publish_stats();
}

BatchEngine::~BatchEngine() = default;

int64_t BatchEngine::submit(RequestParams p, TokenCallback on_event) {
  if (p.prompt.empty()) throw InputError("request: the prompt is empty (it needs at least one token)");
  if (p.max_tokens < 1) throw InputError(fmt::format("request: max_tokens {} (it must be >= 1)", p.max_tokens));
  if (int64_t(p.prompt.size()) + p.max_tokens > max_context_)
    throw InputError(fmt::format("request: prompt ({} tokens) + max_tokens ({}) = {} is beyond the engine's context "
                                 "limit of {} tokens",
                                 p.prompt.size(), p.max_tokens, int64_t(p.prompt.size()) + p.max_tokens, max_context_));
  for (size_t i = 0; i < p.prompt.size(); ++i)
    if (p.prompt[i] < 0 || p.prompt[i] >= vocab_)
      throw InputError(fmt::format("request: prompt token {} is id {}, outside the vocabulary [0, {})", i,
                                   p.prompt[i], vocab_));
  const SamplerConfig& s = p.sampler;
  if (!std::isfinite(s.temperature) || s.temperature < 0)
    throw InputError(fmt::format("request: temperature {} (it must be >= 0; 0 = greedy)", s.temperature));
  if (s.top_k < 0) throw InputError(fmt::format("request: top_k {} (it must be >= 0; 0 = off)", s.top_k));
  if (!(s.top_p > 0 && s.top_p <= 1))
    throw InputError(fmt::format("request: top_p {} (it must be in (0, 1])", s.top_p));
  if (!on_event) throw InputError("request: no event callback");
  std::lock_guard lk(mu_);
  if (queued_ + int64_t(inbox_.size()) >= opts_.max_queue)
    throw EngineBusy(fmt::format("engine: {} requests are waiting already (max_queue {})",
                                 queued_ + int64_t(inbox_.size()), opts_.max_queue));
  int64_t id = next_id_++;
  inbox_.push_back(std::make_unique<Request>(id, std::move(p), std::move(on_event)));
  cv_.notify_all();
  return id;
}

void BatchEngine::cancel(int64_t id) {
  std::lock_guard lk(mu_);
  cancels_.push_back(id);
  cv_.notify_all();
}

void BatchEngine::wait_for_work(std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  cv_.wait_for(lk, timeout, [&] { return !inbox_.empty() || !cancels_.empty(); });
}

EngineStats BatchEngine::stats() const {
  std::lock_guard lk(mu_);
  EngineStats s = published_;
  s.waiting += int64_t(inbox_.size());
  return s;
}

void BatchEngine::publish_stats() {
  EngineStats s = counters_;
  s.waiting = int64_t(waiting_.size());
  s.running = int64_t(running_.size());
  s.kv_pages_used = pages_.held();
  s.kv_pages_total = pages_.total();
  s.state_slots_used = slots_.held();
  s.state_slots_total = slots_.total();
  std::lock_guard lk(mu_);
  published_ = s;
  queued_ = int64_t(waiting_.size());
}

bool BatchEngine::take_inbox() {
  std::vector<Owned> in;
  std::vector<int64_t> cancels;
  {
    std::lock_guard lk(mu_);
    in.swap(inbox_);
    cancels.swap(cancels_);
    queued_ += int64_t(in.size());  // until publish_stats() counts them in waiting_
  }
  for (Owned& r : in) {
    counters_.prompt_tokens += r->prompt_len;
    waiting_.push_back(std::move(r));
  }
  for (int64_t id : cancels) {
    auto match = [&](const Owned& r) { return r->id == id && !r->done; };
    auto w = std::find_if(waiting_.begin(), waiting_.end(), match);
    if (w != waiting_.end()) {
      finish(**w, FinishReason::cancelled, -1);
      continue;
    }
    auto r = std::find_if(running_.begin(), running_.end(), match);
    if (r != running_.end()) finish(**r, FinishReason::cancelled, -1);
  }
  drop_finished();
  return !in.empty() || !cancels.empty();
}

uint64_t BatchEngine::block_key(Request& r, int64_t block) {
  while (int64_t(r.keys.size()) <= block) {
    size_t j = r.keys.size();
    r.keys.push_back(prefix_block_key(j ? r.keys[j - 1] : 0, r.tokens.data() + j * size_t(block_), block_));
  }
  return r.keys[size_t(block)];
}

bool BatchEngine::snapshot_wanted(const Request& r, int64_t boundary) const {
  int64_t k = boundary / block_;
  return k >= 1 && (k % opts_.snapshot_interval_pages == 0 || k == (r.prompt_len - 1) / block_);
}

bool BatchEngine::try_admit(Request& r) {
  const int64_t n = int64_t(r.tokens.size());
  // The cached prefix, in whole blocks, leaving the last known token to compute (its logits are needed).
  int64_t k = 0;
  int32_t snap = -1;
  if (opts_.prefix_caching) {
    const int64_t kmax = (n - 1) / block_;
    if (uses_pages_) {
      while (k < kmax && pages_.lookup(block_key(r, k)) >= 0) ++k;
    } else {
      k = kmax;
    }
    if (uses_slots_) {
      while (k > 0 && (snap = slots_.lookup(block_key(r, k - 1))) < 0) --k;
      if (k == 0) snap = -1;
    }
  }
  // Pin what is reused before allocating, so that allocation cannot evict it.
  std::vector<int32_t> hit;
  if (uses_pages_)
    for (int64_t i = 0; i < k; ++i) {
      hit.push_back(pages_.lookup(block_key(r, i)));
      pages_.retain(hit.back());
    }
  if (snap >= 0) slots_.retain(snap);
  const int64_t need = uses_pages_ ? (n + block_ - 1) / block_ - k : 0;
  // Alone, a request may take every page (it fits: submit() checked max_context).
  const int64_t headroom = uses_pages_ && !running_.empty() ? watermark_ : 0;
  if (pages_.available() < need + headroom || (uses_slots_ && slots_.available() < 1)) {
    for (int32_t p : hit) pages_.release(p);
    if (snap >= 0) slots_.release(snap);
    return false;
  }
  r.pages = std::move(hit);
  for (int64_t i = 0; i < need; ++i) r.pages.push_back(pages_.allocate());
  if (uses_slots_) {
    r.slot = slots_.allocate();
    if (snap >= 0) {
      runner_.copy_state(snap, r.slot);
      slots_.release(snap);  // back to the idle list as its most recently used entry
    } else {
      runner_.reset_state(r.slot);
    }
  }
  r.computed = k * block_;
  r.published = uses_pages_ ? k : 0;
  counters_.prefix_hit_tokens += k * block_;
  return true;
}

void BatchEngine::release_memory(Request& r) {
  for (int32_t p : r.pages) pages_.release(p);
  r.pages.clear();
  if (r.slot >= 0) slots_.release(r.slot);
  r.slot = -1;
  r.computed = 0;
  r.published = 0;
}

void BatchEngine::preempt_newest() {
  Owned v = std::move(running_.back());
  running_.pop_back();
  release_memory(*v);
  ++counters_.preemptions;
  waiting_.push_front(std::move(v));
}

bool BatchEngine::reserve_pages(Request& r, int64_t tokens) {
  if (!uses_pages_) return true;
  const size_t need = size_t((tokens + block_ - 1) / block_);
  while (r.pages.size() < need) {
    int32_t p = pages_.allocate();
    if (p >= 0) {
      r.pages.push_back(p);
      continue;
    }
    const bool self = running_.back().get() == &r;
    preempt_newest();
    if (self) return false;
  }
  return true;
}

int64_t BatchEngine::chunk_end(Request& r, int64_t budget) {
  int64_t end = std::min(int64_t(r.tokens.size()), r.computed + budget);
  if (uses_slots_ && opts_.prefix_caching) {
    // Stop at the next wanted snapshot boundary that has no snapshot yet: the state exists only there.
    for (int64_t b = (r.computed / block_ + 1) * block_; b < end; b += block_)
      if (snapshot_wanted(r, b) && slots_.lookup(block_key(r, b / block_ - 1)) < 0) return b;
  }
  return end;
}

bool BatchEngine::step() {
  bool busy = take_inbox();
  RowBatch b;
  b.max_pages = pools_.max_pages;
  std::vector<Request*> seqs;
  std::vector<int64_t> rows_of;
  int64_t budget = opts_.max_batch_tokens;
  auto add = [&](Request& r, int64_t end) {
    const int32_t s = int32_t(seqs.size());
    for (int64_t p = r.computed; p < end; ++p) {
      b.ids.push_back(r.tokens[size_t(p)]);
      b.pos.push_back(int32_t(p));
      b.seq.push_back(s);
    }
    if (end == int64_t(r.tokens.size())) b.logits_rows.push_back(int32_t(b.ids.size() - 1));
    b.block_table.resize(size_t((s + 1) * b.max_pages), -1);
    // The pages of positions < end only (the contract: -1 past the sequence's length), though more are reserved.
    const size_t used = std::min(r.pages.size(), size_t((end + block_ - 1) / block_));
    std::copy(r.pages.begin(), r.pages.begin() + int64_t(used), b.block_table.begin() + s * b.max_pages);
    b.state_slot.push_back(r.slot);
    seqs.push_back(&r);
    rows_of.push_back(end - r.computed);
    budget -= end - r.computed;
  };
  // 1. One decode row per running sequence, oldest first; a page boundary may pre-empt the newest.
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Request& r = *running_[i];
    if (r.pending() != 1) continue;
    if (!reserve_pages(r, int64_t(r.tokens.size()))) break;  // r was the newest and gave up its memory
    add(r, int64_t(r.tokens.size()));
  }
  // 2. The next chunk of every prompt being prefilled (its pages were reserved at admission).
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Request& r = *running_[i];
    if (r.pending() > 1) add(r, chunk_end(r, budget));
  }
  // 3. Admit waiting requests, first come first served, while the budget and memory last.
  while (budget > 0 && !waiting_.empty() && int64_t(running_.size()) < opts_.max_running) {
    Request& r = *waiting_.front();
    if (!try_admit(r)) break;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
    add(r, chunk_end(r, budget));
  }
  if (b.rows() == 0) {
    publish_stats();
    return busy;
  }

  logits_.resize(b.logits_rows.size() * size_t(vocab_));
  try {
    runner_.run(b, logits_.data());
  } catch (const std::exception& e) {
    for (Request* r : seqs) finish(*r, FinishReason::error, -1, std::string("model: ") + e.what());
    drop_finished();
    publish_stats();
    return true;
  }
  size_t li = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    Request& r = *seqs[s];
    const bool sampled = r.computed + rows_of[s] == int64_t(r.tokens.size());
    after_run(r, rows_of[s], sampled ? logits_.data() + li++ * size_t(vocab_) : nullptr);
  }
  drop_finished();
  publish_stats();
  return true;
}

void BatchEngine::after_run(Request& r, int64_t rows, const float* logits) {
  r.computed += rows;
  if (opts_.prefix_caching) {
    // Every page now full is published (unless the same prefix was published by another sequence
    // first: then this one stays private and is freed with the request).
    if (uses_pages_)
      for (; (r.published + 1) * block_ <= r.computed; ++r.published) {
        int32_t p = r.pages[size_t(r.published)];
        if (!pages_.is_cached(p)) pages_.publish(p, block_key(r, r.published));
      }
    if (uses_slots_ && r.computed % block_ == 0 && snapshot_wanted(r, r.computed)) {
      const uint64_t key = block_key(r, r.computed / block_ - 1);
      if (slots_.lookup(key) < 0) {
        int32_t s = slots_.allocate();  // a free slot or the least recently used snapshot, never a sequence's
        if (s >= 0) {
          runner_.copy_state(r.slot, s);
          slots_.publish(s, key);
          slots_.release(s);
        }
      }
    }
  }
  if (!logits) return;
  const int32_t token = r.sampler.sample(logits, vocab_, r.rng);
  r.tokens.push_back(token);
  ++r.generated;
  ++counters_.generated_tokens;
  const auto& stops = r.params.stop_ids;
  FinishReason why = std::find(stops.begin(), stops.end(), token) != stops.end() ? FinishReason::stop
                     : r.generated >= r.params.max_tokens                         ? FinishReason::length
                                                                                  : FinishReason::none;
  if (why != FinishReason::none) {
    finish(r, why, token);
  } else if (!deliver(r, TokenEvent{r.id, token, FinishReason::none, {}})) {
    finish(r, FinishReason::stop, -1);
  }
}

bool BatchEngine::deliver(Request& r, const TokenEvent& ev) {
  try {
    return r.on_event(ev);
  } catch (...) {
    return false;  // a callback that throws is treated as a client that has gone
  }
}

void BatchEngine::finish(Request& r, FinishReason why, int32_t token, std::string error) {
  r.done = true;
  release_memory(r);
  // A client holding its last token may read stats() at once (/metrics): its tokens must be counted
  // by then, not only at the end of this step.
  publish_stats();
  deliver(r, TokenEvent{r.id, token, why, std::move(error)});
}

void BatchEngine::drop_finished() {
  auto done = [](const Owned& r) { return r->done; };
  waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(), done), waiting_.end());
  running_.erase(std::remove_if(running_.begin(), running_.end(), done), running_.end());
}

}  // namespace strata
