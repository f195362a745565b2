// BatchEngine (continuous batching over paged KV and state slots) against a fake ModelRunner whose
// logits depend on the pages and slots it is handed (tests/fake_model_runner.h): every request's
// tokens must equal those of its own sampler over the reference function of its full sequence,
// whatever the arrivals, memory pressure, pre-emptions and prefix hits.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "core/error.h"
#include "fake_model_runner.h"
#include "infer/batch_engine.h"

using namespace strata;
using namespace strata::testing_fake;

namespace {

constexpr int64_t V = 40;

struct Outcome {
  std::vector<int32_t> tokens;
  FinishReason finish = FinishReason::none;
  int64_t events_after_finish = 0;
  std::string error;
};

// Collects every request's events (from the stepping thread).
struct Collector {
  std::mutex mu;
  std::map<int64_t, Outcome> out;
  std::function<bool(const TokenEvent&)> answer = [](const TokenEvent&) { return true; };
  TokenCallback callback() {
    return [this](const TokenEvent& ev) {
      std::lock_guard lk(mu);
      Outcome& o = out[ev.request];
      if (o.finish != FinishReason::none) ++o.events_after_finish;
      if (ev.token >= 0) o.tokens.push_back(ev.token);
      o.finish = ev.finish;
      o.error = ev.error;
      return answer(ev);
    };
  }
};

struct Job {
  RequestParams params;
  int64_t arrival = 0;  // step before which it is submitted
  int64_t id = -1;
};

void drain(Engine& e, int64_t limit = 100000) {
  int64_t n = 0;
  while (e.step()) ASSERT_LT(++n, limit) << "the engine never went idle";
}

// Submits each job before step `arrival` and steps until everything is done.
void run_jobs(Engine& e, Collector& c, std::vector<Job>& jobs) {
  int64_t last = 0;
  for (auto& j : jobs) last = std::max(last, j.arrival);
  for (int64_t t = 0;; ++t) {
    for (auto& j : jobs)
      if (j.arrival == t) j.id = e.submit(j.params, c.callback());
    bool busy = e.step();
    if (!busy && t > last) break;
    ASSERT_LT(t, 100000);
  }
}

std::vector<int32_t> reference(FakeKind kind, const RequestParams& p) {
  return reference_tokens(kind, V, p.prompt, p.max_tokens, p.sampler, p.seed, p.stop_ids);
}

void expect_all_match(FakeKind kind, Collector& c, const std::vector<Job>& jobs) {
  for (const Job& j : jobs) {
    const Outcome& o = c.out[j.id];
    std::vector<int32_t> want = reference(kind, j.params);
    EXPECT_EQ(o.tokens, want) << "request " << j.id << " (prompt " << j.params.prompt.size() << " tokens)";
    EXPECT_TRUE(o.finish == FinishReason::length || o.finish == FinishReason::stop) << finish_reason_name(o.finish);
    EXPECT_EQ(o.events_after_finish, 0);
  }
}

void expect_clean(const FakeRunner& m, const Engine& e) {
  EXPECT_EQ(m.violations, 0) << m.first_violation;
  EXPECT_EQ(m.stale_reads, 0);
  EngineStats s = e.stats();
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.waiting, 0);
  EXPECT_EQ(s.kv_pages_used, 0);
  EXPECT_EQ(s.state_slots_used, 0);
}

// Prompts made of one of a few shared "system prompts" and a random tail, so prefixes repeat.
std::vector<Job> random_jobs(uint64_t seed, int n, int64_t max_arrival, bool sampled, int64_t max_prompt = 30,
                             int64_t max_new = 14) {
  std::mt19937_64 g(seed);
  auto below = [&](int64_t k) { return int64_t(g() % uint64_t(k)); };
  std::vector<std::vector<int32_t>> systems(3);
  for (auto& s : systems)
    for (int64_t i = 0, L = std::min(5 + below(12), max_prompt - 1); i < L; ++i) s.push_back(int32_t(below(V)));
  std::vector<Job> jobs;
  for (int i = 0; i < n; ++i) {
    Job j;
    j.params.prompt = below(4) ? systems[size_t(below(3))] : std::vector<int32_t>{};
    const int64_t tail = 1 + below(max_prompt - int64_t(j.params.prompt.size()));  // at least one own token
    for (int64_t k = 0; k < tail; ++k) j.params.prompt.push_back(int32_t(below(V)));
    j.params.max_tokens = 1 + below(max_new);
    j.params.sampler.temperature = sampled ? 1.5f : 0.0f;
    j.params.sampler.top_k = sampled && below(2) ? 8 : 0;
    j.params.seed = g();
    j.arrival = below(max_arrival + 1);
    jobs.push_back(j);
  }
  return jobs;
}

const char* kind_name(FakeKind k) {
  return k == FakeKind::attention ? "attention" : k == FakeKind::mamba ? "mamba" : "hybrid";
}

class EngineKinds : public ::testing::TestWithParam<FakeKind> {};

INSTANTIATE_TEST_SUITE_P(Fake, EngineKinds,
                         ::testing::Values(FakeKind::attention, FakeKind::mamba, FakeKind::hybrid),
                         [](const auto& info) { return std::string(kind_name(info.param)); });

}  // namespace

TEST_P(EngineKinds, OneRequestMatchesTheReference) {
  FakeRunner m(GetParam(), 4, 64, 16, 8, V);
  BatchEngine e(m);
  Collector c;
  std::vector<Job> jobs(1);
  jobs[0].params.prompt = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3};
  jobs[0].params.max_tokens = 12;
  jobs[0].params.sampler.temperature = 0;
  run_jobs(e, c, jobs);
  expect_all_match(GetParam(), c, jobs);
  EXPECT_EQ(c.out[jobs[0].id].finish, FinishReason::length);
  expect_clean(m, e);
  EngineStats s = e.stats();
  EXPECT_EQ(s.prompt_tokens, 10);
  EXPECT_EQ(s.generated_tokens, 12);
}

TEST_P(EngineKinds, RandomArrivalsChunkedPrefillMatchTheReference) {
  for (bool sampled : {false, true}) {
    FakeRunner m(GetParam(), 4, 400, 16, 40, V);
    BatchEngineOptions o;
    o.max_batch_tokens = 9;  // small: prompts are prefilled in chunks beside the decode rows
    o.snapshot_interval_pages = 2;
    BatchEngine e(m, o);
    Collector c;
    std::vector<Job> jobs = random_jobs(sampled ? 11 : 12, 40, 60, sampled);
    run_jobs(e, c, jobs);
    expect_all_match(GetParam(), c, jobs);
    expect_clean(m, e);
    EXPECT_LE(m.max_rows, 9);
    EXPECT_GT(m.mixed_batches, 0);  // decode rows beside prefill chunks
    EXPECT_EQ(e.stats().preemptions, 0);
  }
}

TEST_P(EngineKinds, TinyMemoryPreemptsAndRecomputesTheSameTokens) {
  // Room for about two sequences at a time (each needs up to 44 tokens = 11 pages; 12 pages in all,
  // 3 state slots): admission and decoding run out of memory all the time.
  FakeRunner m(GetParam(), 4, 12, 12, 3, V);
  BatchEngineOptions o;
  o.max_batch_tokens = 16;
  o.snapshot_interval_pages = 1;
  BatchEngine e(m, o);
  Collector c;
  std::vector<Job> jobs = random_jobs(5, 30, 20, true, 30, 14);
  run_jobs(e, c, jobs);
  expect_all_match(GetParam(), c, jobs);
  expect_clean(m, e);
  EngineStats s = e.stats();
  if (GetParam() != FakeKind::mamba) {
    EXPECT_GT(s.preemptions, 0);  // a Mamba-only model reserves all it needs at admission
  }
  std::printf("%s: %lld pre-emptions, %lld prefix-hit tokens\n", kind_name(GetParam()), (long long)s.preemptions,
              (long long)s.prefix_hit_tokens);
}

TEST_P(EngineKinds, SharedPrefixesHitTheCacheAndChangeNothing) {
  FakeRunner m(GetParam(), 4, 200, 16, 16, V);
  BatchEngineOptions o;
  o.snapshot_interval_pages = 1;
  o.max_batch_tokens = 64;
  BatchEngine e(m, o);
  Collector c;
  std::vector<int32_t> system = {7, 7, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13};  // 14 tokens: 3 full pages
  std::vector<Job> first(1), rest;
  first[0].params.prompt = system;
  first[0].params.prompt.push_back(20);
  first[0].params.max_tokens = 5;
  run_jobs(e, c, first);
  EXPECT_EQ(e.stats().prefix_hit_tokens, 0);
  for (int i = 0; i < 6; ++i) {
    Job j;
    j.params.prompt = system;
    for (int k = 0; k <= i; ++k) j.params.prompt.push_back(int32_t(21 + i + k));
    j.params.max_tokens = 6;
    j.params.sampler.temperature = i % 2 ? 1.0f : 0.0f;
    j.params.seed = uint64_t(i);
    j.arrival = i / 2;
    rest.push_back(j);
  }
  Job again = first[0];  // the first prompt again: every full page but the last token's
  again.arrival = 4;
  rest.push_back(again);
  // A prompt of whole pages cached in full: its last page is recomputed (its last token's logits are needed).
  std::vector<Job> whole(1);
  whole[0].params.prompt = std::vector<int32_t>(system.begin(), system.begin() + 12);
  whole[0].params.max_tokens = 3;
  run_jobs(e, c, whole);
  Job whole_again = whole[0];
  whole_again.arrival = 5;
  rest.push_back(whole_again);
  run_jobs(e, c, rest);
  expect_all_match(GetParam(), c, first);
  expect_all_match(GetParam(), c, whole);
  expect_all_match(GetParam(), c, rest);
  expect_clean(m, e);
  EngineStats s = e.stats();
  // Each later request reuses the system prompt's first 2 or 3 full pages (8 or 12 tokens).
  EXPECT_GE(s.prefix_hit_tokens, 12 * int64_t(rest.size()) - 4);
  if (GetParam() != FakeKind::attention) {
    EXPECT_GT(m.copies, 0);
  }
}

TEST_P(EngineKinds, ResultsDoNotDependOnArrivalOrderOrBatchShape) {
  std::vector<Job> jobs = random_jobs(21, 24, 0, true);
  std::vector<std::vector<int32_t>> got[2];
  for (int run = 0; run < 2; ++run) {
    FakeRunner m(GetParam(), 4, run ? 30 : 400, 16, run ? 4 : 40, V);
    BatchEngineOptions o;
    o.max_batch_tokens = run ? 5 : 256;
    BatchEngine e(m, o);
    Collector c;
    std::vector<Job> order = jobs;
    if (run) std::reverse(order.begin(), order.end());
    for (size_t i = 0; i < order.size(); ++i) order[i].arrival = run ? int64_t(i) : 0;
    run_jobs(e, c, order);
    if (run) std::reverse(order.begin(), order.end());
    for (const Job& j : order) got[run].push_back(c.out[j.id].tokens);
    expect_clean(m, e);
  }
  EXPECT_EQ(got[0], got[1]);
  for (size_t i = 0; i < jobs.size(); ++i) EXPECT_EQ(got[0][i], reference(GetParam(), jobs[i].params));
}

TEST_P(EngineKinds, CancelQueuedAndRunning) {
  FakeRunner m(GetParam(), 4, 64, 16, 8, V);
  BatchEngineOptions o;
  o.max_running = 1;
  BatchEngine e(m, o);
  Collector c;
  RequestParams p;
  p.prompt = {1, 2, 3};
  p.max_tokens = 50;
  int64_t a = e.submit(p, c.callback()), b = e.submit(p, c.callback());
  for (int i = 0; i < 3; ++i) e.step();
  EXPECT_EQ(e.stats().running, 1);
  EXPECT_EQ(e.stats().waiting, 1);
  e.cancel(b);  // queued
  e.step();
  EXPECT_EQ(c.out[b].finish, FinishReason::cancelled);
  EXPECT_TRUE(c.out[b].tokens.empty());
  e.cancel(a);  // running
  e.cancel(12345);  // unknown: ignored
  drain(e);
  EXPECT_EQ(c.out[a].finish, FinishReason::cancelled);
  EXPECT_GE(c.out[a].tokens.size(), 2u);
  EXPECT_LT(c.out[a].tokens.size(), 50u);
  e.cancel(a);  // finished: ignored
  drain(e);
  EXPECT_EQ(c.out[a].events_after_finish, 0);
  expect_clean(m, e);
}

TEST_P(EngineKinds, StopIdsMaxTokensAndCallbackStop) {
  FakeRunner m(GetParam(), 4, 64, 16, 8, V);
  BatchEngine e(m);
  Collector c;
  RequestParams p;
  p.prompt = {5, 4, 3, 2, 1};
  p.max_tokens = 10;
  p.sampler.temperature = 0;
  std::vector<int32_t> free_run = reference(GetParam(), p);
  ASSERT_EQ(free_run.size(), 10u);
  RequestParams stop = p;
  stop.stop_ids = {free_run[3]};
  const auto first_stop = std::find(free_run.begin(), free_run.end(), free_run[3]);
  std::vector<int32_t> want_stop(free_run.begin(), first_stop + 1);
  int64_t s = e.submit(stop, c.callback());
  RequestParams len = p;
  len.max_tokens = 4;
  int64_t l = e.submit(len, c.callback());
  drain(e);
  EXPECT_EQ(c.out[s].tokens, want_stop);
  EXPECT_EQ(c.out[s].finish, FinishReason::stop);
  EXPECT_EQ(c.out[l].tokens, std::vector<int32_t>(free_run.begin(), free_run.begin() + 4));
  EXPECT_EQ(c.out[l].finish, FinishReason::length);
  // A callback that returns false ends its request: one more event, token -1, finish = stop.
  c.answer = [](const TokenEvent& ev) { return ev.finish != FinishReason::none; };
  int64_t q = e.submit(p, c.callback());
  drain(e);
  EXPECT_EQ(c.out[q].tokens, std::vector<int32_t>(free_run.begin(), free_run.begin() + 1));
  EXPECT_EQ(c.out[q].finish, FinishReason::stop);
  EXPECT_EQ(c.out[q].events_after_finish, 0);
  expect_clean(m, e);
}

TEST(BatchEngine, QueueFullIsEngineBusy) {
  FakeRunner m(FakeKind::hybrid, 4, 64, 16, 8, V);
  BatchEngineOptions o;
  o.max_queue = 2;
  BatchEngine e(m, o);
  Collector c;
  RequestParams p;
  p.prompt = {1};
  p.max_tokens = 2;
  e.submit(p, c.callback());
  e.submit(p, c.callback());
  EXPECT_THROW(e.submit(p, c.callback()), EngineBusy);
  EXPECT_EQ(e.stats().waiting, 2);
  drain(e);
  EXPECT_NO_THROW(e.submit(p, c.callback()));
  drain(e);
  EXPECT_EQ(c.out.size(), 3u);
}

TEST(BatchEngine, SubmitRejectsRequestsThatCanNeverRun) {
  FakeRunner m(FakeKind::hybrid, 4, 64, 8, 8, V);  // context: 8 pages of 4 = 32 tokens
  BatchEngine e(m);
  EXPECT_EQ(e.max_context(), 32);
  Collector c;
  auto bad = [&](auto edit) {
    RequestParams p;
    p.prompt = {1, 2};
    p.max_tokens = 3;
    edit(p);
    EXPECT_THROW(e.submit(p, c.callback()), InputError);
  };
  bad([](RequestParams& p) { p.prompt.clear(); });
  bad([](RequestParams& p) { p.max_tokens = 0; });
  bad([](RequestParams& p) { p.prompt.assign(30, 1); });  // 30 + 3 > 32
  bad([](RequestParams& p) { p.prompt[1] = int32_t(V); });
  bad([](RequestParams& p) { p.prompt[0] = -1; });
  bad([](RequestParams& p) { p.sampler.temperature = -1; });
  bad([](RequestParams& p) { p.sampler.top_p = 0; });
  bad([](RequestParams& p) { p.sampler.top_k = -2; });
  RequestParams ok;
  ok.prompt.assign(29, 1);
  ok.max_tokens = 3;
  EXPECT_NO_THROW(e.submit(ok, c.callback()));
  EXPECT_THROW(e.submit(ok, TokenCallback{}), InputError);
  drain(e);
  EXPECT_EQ(c.out.begin()->second.tokens.size(), 3u);
  BatchEngineOptions o;
  o.max_batch_tokens = 0;
  EXPECT_THROW(BatchEngine(m, o), InputError);
}

TEST(BatchEngine, AModelFailureEndsTheBatchsRequestsWithAnError) {
  FakeRunner m(FakeKind::attention, 4, 64, 16, 0, V);
  BatchEngine e(m);
  Collector c;
  RequestParams p;
  p.prompt = {1, 2, 3};
  p.max_tokens = 5;
  int64_t a = e.submit(p, c.callback());
  e.step();
  m.throw_next_run = true;
  e.step();
  EXPECT_EQ(c.out[a].finish, FinishReason::error);
  EXPECT_NE(c.out[a].error.find("fake device fault"), std::string::npos);
  int64_t b = e.submit(p, c.callback());  // the engine goes on
  drain(e);
  EXPECT_EQ(c.out[b].finish, FinishReason::length);
  expect_clean(m, e);
}

TEST(BatchEngine, SubmitAndCancelFromOtherThreadsWhileOneThreadSteps) {
  FakeRunner m(FakeKind::hybrid, 4, 60, 16, 6, V);
  BatchEngineOptions o;
  o.max_batch_tokens = 12;
  o.snapshot_interval_pages = 1;
  BatchEngine e(m, o);
  Collector c;
  std::vector<Job> jobs = random_jobs(77, 60, 0, true);
  std::mutex ids_mu;
  std::vector<int64_t> ids(jobs.size(), -1);
  std::atomic<int> submitters_left{3};
  std::atomic<bool> stop{false};
  std::thread driver([&] {
    while (!stop) {
      if (!e.step()) e.wait_for_work(std::chrono::milliseconds(5));
    }
    while (e.step()) {
    }
  });
  std::vector<std::thread> submitters;
  for (int t = 0; t < 3; ++t)
    submitters.emplace_back([&, t] {
      for (size_t i = size_t(t); i < jobs.size(); i += 3) {
        int64_t id = -1;
        while (id < 0) {
          try {
            id = e.submit(jobs[i].params, c.callback());
          } catch (const EngineBusy&) {
            std::this_thread::yield();
          }
        }
        {
          std::lock_guard lk(ids_mu);
          ids[i] = id;
        }
        if (i % 10 == 9) e.cancel(id);  // some are cancelled, wherever they are by then
        (void)e.stats();
      }
      --submitters_left;
    });
  for (auto& t : submitters) t.join();
  // Wait until every request has finished, then stop the driver.
  for (int spin = 0; spin < 200000; ++spin) {
    {
      std::lock_guard lk(c.mu);
      size_t finished = 0;
      for (auto& [id, out] : c.out) finished += out.finish != FinishReason::none;
      if (finished == jobs.size()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  stop = true;
  driver.join();
  for (size_t i = 0; i < jobs.size(); ++i) {
    const Outcome& out = c.out[ids[i]];
    std::vector<int32_t> want = reference(FakeKind::hybrid, jobs[i].params);
    if (out.finish == FinishReason::cancelled) {
      EXPECT_EQ(i % 10, 9u);
      EXPECT_EQ(out.tokens, std::vector<int32_t>(want.begin(), want.begin() + int64_t(out.tokens.size())));
    } else {
      EXPECT_EQ(out.tokens, want) << i;
    }
  }
  expect_clean(m, e);
}

TEST_P(EngineKinds, ManySeedsPageSizesBudgetsAndMemorySizes) {
  int64_t preemptions = 0, hits = 0;
  for (uint64_t seed = 0; seed < 24; ++seed) {
    const int64_t page = int64_t(1 + seed % 5), budget = int64_t(1 + seed * 7 % 13);
    const int64_t max_prompt = 16, max_new = 8;
    const int64_t max_pages = (max_prompt + max_new + page - 1) / page;
    // From barely one sequence's worth of memory to plenty.
    const int64_t pages = max_pages + int64_t(seed % 4) * max_pages / 2, slots = 1 + int64_t(seed % 4) * 2;
    FakeRunner m(GetParam(), page, pages, max_pages, slots, V);
    BatchEngineOptions o;
    o.max_batch_tokens = budget;
    o.snapshot_interval_pages = int64_t(1 + seed % 3);
    o.prefix_caching = seed % 6 != 5;
    o.admission_watermark_pages = int64_t(seed % 3);
    BatchEngine e(m, o);
    Collector c;
    std::vector<Job> jobs = random_jobs(1000 + seed, 16, 30, seed % 2 == 1, max_prompt, max_new);
    run_jobs(e, c, jobs);
    SCOPED_TRACE("seed " + std::to_string(seed) + ", page " + std::to_string(page) + ", budget " +
                 std::to_string(budget));
    expect_all_match(GetParam(), c, jobs);
    expect_clean(m, e);
    EXPECT_LE(m.max_rows, budget);
    preemptions += e.stats().preemptions;
    hits += e.stats().prefix_hit_tokens;
  }
  std::printf("%s: %lld pre-emptions, %lld prefix-hit tokens over 24 engines\n", kind_name(GetParam()),
              (long long)preemptions, (long long)hits);
}

TEST_P(EngineKinds, AdmitsEveryRequestThatFitsInOneStep) {
  FakeRunner m(GetParam(), 4, 200, 16, 8, V);
  BatchEngineOptions o;
  o.admission_watermark_pages = 3;
  BatchEngine e(m, o);
  Collector c;
  RequestParams p;
  p.prompt = {1, 2, 3, 4, 5};
  p.max_tokens = 4;
  for (int i = 0; i < 5; ++i) e.submit(p, c.callback());
  EXPECT_EQ(e.stats().waiting, 5);
  e.step();
  EXPECT_EQ(e.stats().running, 5);
  EXPECT_EQ(e.stats().waiting, 0);
  EngineStats s = e.stats();
  EXPECT_EQ(s.kv_pages_used, GetParam() == FakeKind::mamba ? 0 : 10);  // 2 pages each (5 tokens, then a 6th)
  EXPECT_EQ(s.state_slots_used, GetParam() == FakeKind::attention ? 0 : 5);
  EXPECT_EQ(s.kv_pages_total, GetParam() == FakeKind::mamba ? 0 : 200);
  EXPECT_EQ(s.state_slots_total, GetParam() == FakeKind::attention ? 0 : 8);
  drain(e);
  expect_clean(m, e);
  EXPECT_EQ(e.stats().generated_tokens, 20);
}
