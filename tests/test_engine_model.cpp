// The serving engine end to end on real models: BatchEngine (scheduling, pages, state slots, prefix
// cache, pre-emption) driving make_model_runner (Model::step_rows). A request's tokens must be
// - those of generate() (greedy) when it runs alone: the engine decodes what the model decodes;
// - identical, token for token, whatever else shares the engine: every other request, its arrival
//   order, chunked prefill, prefix hits and pre-emption under tight memory (batch invariance),
//   for greedy and for seeded sampling.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "infer/batch_engine.h"
#include "infer/generate.h"
#include "infer/model_runner.h"
#include "model_testing.h"
#include "models/model.h"

using namespace strata;
namespace st = strata::testing;

namespace {

struct Job {
  RequestParams params;
  int64_t arrival = 0;  // engine step before which it is submitted
};

// Prompts of different lengths, half of them sharing a 16-token system prefix (prefix hits), greedy
// and sampled.
std::vector<Job> make_jobs(uint64_t seed) {
  const auto system = st::random_tokens(16, seed);
  std::vector<Job> jobs;
  for (int i = 0; i < 8; ++i) {
    Job j;
    auto own = st::random_tokens(3 + 5 * i % 19, seed + 10 + uint64_t(i));
    if (i % 2 == 0) j.params.prompt = system;
    j.params.prompt.insert(j.params.prompt.end(), own.begin(), own.end());
    j.params.max_tokens = 6 + i % 5;
    j.params.sampler.temperature = i % 3 == 0 ? 0.8f : 0.0f;
    j.params.seed = 100 + uint64_t(i);
    j.arrival = (i * 3) % 7;
    jobs.push_back(std::move(j));
  }
  return jobs;
}

PoolSizes pools(int64_t num_pages, int64_t slots) {
  PoolSizes p;
  p.page_size = 4;
  p.max_pages = 16;  // 64 tokens per sequence at most
  p.num_pages = num_pages;
  p.num_state_slots = slots;
  return p;
}

// Runs the jobs through one engine (arrivals as given) and returns each job's tokens.
std::vector<std::vector<int32_t>> run(Model& m, const std::vector<Job>& jobs, const PoolSizes& ps,
                                      const BatchEngineOptions& opts, EngineStats* stats = nullptr) {
  auto runner = make_model_runner(m, ps);
  BatchEngine engine(*runner, opts);
  std::map<int64_t, size_t> which;
  std::vector<std::vector<int32_t>> out(jobs.size());
  std::vector<FinishReason> finish(jobs.size(), FinishReason::none);
  int64_t last = 0;
  for (auto& j : jobs) last = std::max(last, j.arrival);
  for (int64_t t = 0;; ++t) {
    for (size_t i = 0; i < jobs.size(); ++i)
      if (jobs[i].arrival == t) {
        const int64_t id = engine.submit(jobs[i].params, [&, i](const TokenEvent& ev) {
          if (ev.token >= 0) out[i].push_back(ev.token);
          finish[i] = ev.finish;
          EXPECT_NE(ev.finish, FinishReason::error) << ev.error;
          return true;
        });
        which[id] = i;
      }
    const bool busy = engine.step();
    if (!busy && t > last) break;
    if (t > 100000) ADD_FAILURE() << "the engine never went idle";
    if (t > 100000) break;
  }
  for (size_t i = 0; i < jobs.size(); ++i) EXPECT_EQ(finish[i], FinishReason::length) << "job " << i;
  if (stats) *stats = engine.stats();
  return out;
}

struct Kind {
  const char* name;
  const char* pattern;
  int mamba_version;
  const char* attention;
};

class EngineModel : public ::testing::TestWithParam<Kind> {};

TEST_P(EngineModel, AloneTheEngineDecodesWhatGenerateDecodes) {
  const Kind k = GetParam();
  Model m(st::tiny_model(k.pattern, k.mamba_version, k.attention), 7);
  auto jobs = make_jobs(1);
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (jobs[i].params.sampler.temperature != 0.0f) continue;
    jobs[i].arrival = 0;
    auto got = run(m, {jobs[i]}, pools(64, 4), {});
    GenerateOptions g;
    g.max_tokens = int(jobs[i].params.max_tokens);
    g.sampler.temperature = 0.0f;
    EXPECT_EQ(got[0], generate(m, jobs[i].params.prompt, g)) << k.name << " job " << i;
  }
}

TEST_P(EngineModel, TokensDoNotDependOnTheBatchArrivalsOrMemoryPressure) {
  const Kind k = GetParam();
  Model m(st::tiny_model(k.pattern, k.mamba_version, k.attention), 7);
  const auto jobs = make_jobs(2);
  // Reference: each request alone, ample memory, its prompt in one chunk.
  std::vector<std::vector<int32_t>> alone;
  for (const Job& j : jobs) {
    Job solo = j;
    solo.arrival = 0;
    alone.push_back(run(m, {solo}, pools(64, 4), {})[0]);
  }
  // Together, in small chunks (prefill mixed with decode), with prefix caching.
  BatchEngineOptions small;
  small.max_batch_tokens = 7;
  small.snapshot_interval_pages = 1;
  EngineStats st_together;
  EXPECT_EQ(run(m, jobs, pools(160, 40), small, &st_together), alone) << k.name << ": together";
  // Reversed arrivals.
  auto reversed = jobs;
  for (auto& j : reversed) j.arrival = 6 - j.arrival;
  EXPECT_EQ(run(m, reversed, pools(160, 40), small), alone) << k.name << ": reversed arrivals";
  // Tight memory: pages for a little more than the longest request, so requests are pre-empted and
  // recomputed.
  BatchEngineOptions tight = small;
  tight.max_batch_tokens = 16;
  EngineStats st_tight;
  EXPECT_EQ(run(m, jobs, pools(14, 10), tight, &st_tight), alone) << k.name << ": tight memory";
  std::printf("%s: together: prefix-hit tokens %ld; tight memory: pre-emptions %ld, prefix-hit tokens %ld\n", k.name,
              long(st_together.prefix_hit_tokens), long(st_tight.preemptions), long(st_tight.prefix_hit_tokens));
  EXPECT_GT(st_together.prefix_hit_tokens, 0) << k.name;
  if (std::string(k.pattern).find_first_of("*") != std::string::npos) {
    EXPECT_GT(st_tight.preemptions, 0) << k.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, EngineModel,
                         ::testing::Values(Kind{"attention", "*-", 2, "gqa"}, Kind{"mla", "*-", 2, "mla"},
                                           Kind{"mamba1", "M-", 1, "gqa"}, Kind{"mamba2", "M-", 2, "gqa"},
                                           Kind{"hybrid", "M*-E", 2, "gqa"}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
