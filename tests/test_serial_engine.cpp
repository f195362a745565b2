// SerialEngine (infer/serial_engine.h), the baseline Engine: a request's tokens equal generate()'s
// (greedy and seeded sampling), requests run in order, cancel / callback-false / queue-full / bad
// parameters behave as infer/engine.h says.
#include <gtest/gtest.h>

#include <map>

#include "core/error.h"
#include "infer/generate.h"
#include "infer/serial_engine.h"
#include "model_testing.h"

using namespace strata;

namespace {

struct Collected {
  std::vector<int32_t> tokens;
  FinishReason finish = FinishReason::none;
  int finals = 0;
  std::string error;
};

TokenCallback collect(Collected& c, int stop_after = -1) {
  return [&c, stop_after](const TokenEvent& e) {
    if (e.token >= 0) c.tokens.push_back(e.token);
    if (e.finish != FinishReason::none) c.finish = e.finish, ++c.finals, c.error = e.error;
    return stop_after < 0 || int(c.tokens.size()) < stop_after;
  };
}

void run_all(Engine& e) {
  for (int guard = 0; guard < 100000 && e.step(); ++guard) {
  }
}

RequestParams params(std::vector<int32_t> prompt, int64_t max_tokens, float temperature, uint64_t seed) {
  RequestParams p;
  p.prompt = std::move(prompt);
  p.max_tokens = max_tokens;
  p.sampler.temperature = temperature;
  p.seed = seed;
  return p;
}

}  // namespace

TEST(SerialEngine, TokensEqualGenerate) {
  Model m(strata::testing::tiny_model("M*"), 3);
  SerialEngine eng(m);
  struct Case {
    std::vector<int32_t> prompt;
    float temperature;
    uint64_t seed;
  };
  std::vector<Case> cases = {{strata::testing::random_tokens(5, 1), 0.0f, 0},
                             {strata::testing::random_tokens(9, 2), 0.9f, 11},
                             {strata::testing::random_tokens(3, 3), 1.0f, 12},
                             {strata::testing::random_tokens(1, 4), 0.0f, 0}};
  std::vector<Collected> got(cases.size());
  for (size_t i = 0; i < cases.size(); ++i)
    eng.submit(params(cases[i].prompt, 10, cases[i].temperature, cases[i].seed), collect(got[i]));
  EXPECT_EQ(eng.stats().waiting, 4);
  run_all(eng);
  for (size_t i = 0; i < cases.size(); ++i) {
    GenerateOptions o;
    o.max_tokens = 10;
    o.sampler.temperature = cases[i].temperature;
    o.seed = cases[i].seed;
    EXPECT_EQ(got[i].tokens, generate(m, cases[i].prompt, o)) << "case " << i;
    EXPECT_EQ(got[i].finish, FinishReason::length);
    EXPECT_EQ(got[i].finals, 1);
  }
  const EngineStats s = eng.stats();
  EXPECT_EQ(s.waiting, 0);
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.generated_tokens, 40);
  EXPECT_EQ(s.prompt_tokens, 18);
}

TEST(SerialEngine, StopIdsCancelAndCallbackFalse) {
  Model m(strata::testing::tiny_model("*M"), 5);
  SerialEngine eng(m);
  const auto prompt = strata::testing::random_tokens(4, 9);
  GenerateOptions o;
  o.max_tokens = 8;
  o.sampler.temperature = 0;
  const auto want = generate(m, prompt, o);
  // A stop id: ends after emitting it.
  Collected a, b, c, d;
  RequestParams pa = params(prompt, 8, 0, 0);
  pa.stop_ids = {want[2]};
  eng.submit(pa, collect(a));
  eng.submit(params(prompt, 8, 0, 0), collect(b, 3));  // callback false after 3 tokens
  const int64_t idc = eng.submit(params(prompt, 8, 0, 0), collect(c));
  eng.cancel(idc);  // cancelled while queued
  eng.cancel(12345);  // unknown: ignored
  run_all(eng);
  const size_t first = size_t(std::find(want.begin(), want.end(), want[2]) - want.begin());
  EXPECT_EQ(a.tokens, std::vector<int32_t>(want.begin(), want.begin() + long(first) + 1));
  EXPECT_EQ(a.finish, FinishReason::stop);
  EXPECT_EQ(b.tokens, std::vector<int32_t>(want.begin(), want.begin() + 3));
  EXPECT_EQ(b.finish, FinishReason::stop);
  EXPECT_EQ(b.finals, 1);
  EXPECT_TRUE(c.tokens.empty());
  EXPECT_EQ(c.finish, FinishReason::cancelled);
  // Cancelled while running.
  const int64_t idd = eng.submit(params(prompt, 8, 0, 0), collect(d));
  eng.step();  // prefill
  eng.step();  // first token
  eng.cancel(idd);
  run_all(eng);
  EXPECT_EQ(d.tokens.size(), 1u);
  EXPECT_EQ(d.finish, FinishReason::cancelled);
  EXPECT_EQ(d.finals, 1);
  EXPECT_FALSE(eng.step());
}

TEST(SerialEngine, RefusesBadRequestsAndAFullQueue) {
  Model m(strata::testing::tiny_model("M"), 1);
  SerialEngineOptions opts;
  opts.max_queue = 2;
  opts.max_context = 16;
  SerialEngine eng(m, opts);
  Collected x;
  EXPECT_THROW(eng.submit(params({}, 4, 0, 0), collect(x)), InputError);
  EXPECT_THROW(eng.submit(params({300}, 4, 0, 0), collect(x)), InputError);
  EXPECT_THROW(eng.submit(params({1}, 0, 0, 0), collect(x)), InputError);
  EXPECT_THROW(eng.submit(params({1, 2}, 15, 0, 0), collect(x)), InputError);  // 17 > context 16
  EXPECT_THROW(eng.submit(params({1}, 4, -1, 0), collect(x)), InputError);
  RequestParams bad_p = params({1}, 4, 1, 0);
  bad_p.sampler.top_p = 0;
  EXPECT_THROW(eng.submit(bad_p, collect(x)), InputError);
  EXPECT_EQ(eng.max_context(), 16);
  Collected a, b;
  eng.submit(params({1}, 4, 0, 0), collect(a));
  eng.submit(params({2}, 4, 0, 0), collect(b));
  EXPECT_THROW(eng.submit(params({3}, 4, 0, 0), collect(x)), EngineBusy);
  eng.step();  // the first starts running: one place in the queue again
  eng.submit(params({3}, 4, 0, 0), collect(x));
  run_all(eng);
  EXPECT_EQ(a.tokens.size(), 4u);
  EXPECT_EQ(b.tokens.size(), 4u);
  EXPECT_EQ(x.tokens.size(), 4u);
}
