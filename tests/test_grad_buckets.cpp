// The pieces of data parallelism that need no second process: the per-layer hook of backward
// (GradsFinal) reports only gradients that are final, and GradReducer cuts the flat gradient buffer
// into buckets from its end, starts each as soon as it is reported final, and averages.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "core/arena.h"
#include "model_testing.h"
#include "models/model.h"
#include "train/distributed.h"

using namespace strata;
using namespace strata::testing;

namespace {

// Snapshots grad[offset, P) at every report, to compare with the gradients after backward.
struct Recorder final : GradsFinal {
  const float* grad = nullptr;
  int64_t P = 0;
  std::vector<std::pair<int64_t, std::vector<float>>> seen;
  void from(int64_t offset) override { seen.push_back({offset, std::vector<float>(grad + offset, grad + P)}); }
};

void expect_reports_are_final(const ModelConfig& cfg) {
  Model m(cfg, 3);
  ParamStore& ps = m.params();
  const int64_t P = ps.numel(), B = 2, T = 12;
  Arena arena(Device::cpu);
  Ctx ctx{Device::cpu, &arena, true};
  Recorder rec;
  rec.grad = ps.flat_grad();
  rec.P = P;
  ctx.grads_final = &rec;
  auto ids = random_tokens(B * T, 1), tgt = random_tokens(B * T, 2);
  ps.zero_grad();
  m.forward_loss(ctx, ids.data(), tgt.data(), B, T);
  m.backward(ctx, 0.5f);
  // One report after the final norm, then one per layer, last layer first.
  ASSERT_EQ(rec.seen.size(), m.layers().size() + 1);
  for (size_t i = 1; i < rec.seen.size(); ++i) EXPECT_LT(rec.seen[i].first, rec.seen[i - 1].first);
  EXPECT_GT(rec.seen.back().first, 0);  // the embedding (offset 0) is final only after backward
  for (auto& [offset, snap] : rec.seen)
    EXPECT_EQ(0, std::memcmp(snap.data(), ps.flat_grad() + offset, snap.size() * sizeof(float)))
        << cfg.pattern << ": gradients from offset " << offset << " changed after they were reported final";
}

// Sums by multiplying by the world size: every rank holds the same gradients.
struct FakeWorld final : Communicator {
  int n = 2;
  std::vector<std::pair<float*, int64_t>> started, pending;
  int progressed = 0;
  int rank() const override { return 0; }
  int size() const override { return n; }
  std::string backend() const override { return "fake"; }
  void set_timeout(double) override {}
  void start_sum(float* d, int64_t k) override { started.push_back({d, k}), pending.push_back({d, k}); }
  void progress() override { ++progressed; }
  void wait_all(const std::string&) override {
    for (auto& [d, k] : pending)
      for (int64_t i = 0; i < k; ++i) d[i] *= float(n);
    pending.clear();
  }
  void sum(double*, int, const std::string&) override {}
  void broadcast(void*, size_t, int, const std::string&) override {}
  void barrier(const std::string&) override {}
  void all_gather(float*, const std::vector<int64_t>&, const std::string&) override {}
  void gather(float*, const std::vector<int64_t>&, int, const std::string&) override {}
  void scatter(float*, const std::vector<int64_t>&, int, const std::string&) override {}
  [[noreturn]] void abort_job(const std::string&) override { std::abort(); }
};

}  // namespace

TEST(GradsFinal, ReportedGradientsAreFinalForEveryBlockKind) {
  expect_reports_are_final(tiny_model("M*E-"));
  expect_reports_are_final(tiny_model("M*", 1));  // Mamba-1
  ModelConfig tied = tiny_model("M-*");
  tied.tie_embeddings = true;  // the embedding gets the head's gradient first and its own last
  expect_reports_are_final(tied);
  ModelConfig untied = tiny_model("*-");
  untied.tie_embeddings = false;
  expect_reports_are_final(untied);
}

TEST(GradReducer, BucketsFromTheEndStartWhenFinalAndAverage) {
  FakeWorld w;
  std::vector<float> g(10);
  for (int i = 0; i < 10; ++i) g[size_t(i)] = float(i);
  GradReducer r(w, Device::cpu, 10, 4, /*overlap=*/true);
  EXPECT_EQ(r.bucket_count(), 3);  // [6, 10), [2, 6), [0, 2)
  r.begin(g.data());
  r.from(7);
  EXPECT_TRUE(w.started.empty()) << "a bucket starts only when all of it is final";
  r.from(6);
  ASSERT_EQ(w.started.size(), 1u);
  EXPECT_EQ(w.started[0].first, g.data() + 6);
  EXPECT_EQ(w.started[0].second, 4);
  r.from(1);  // the second bucket; the third needs offset 0
  ASSERT_EQ(w.started.size(), 2u);
  EXPECT_EQ(w.started[1].first, g.data() + 2);
  EXPECT_GT(w.progressed, 0);
  r.finish();
  ASSERT_EQ(w.started.size(), 3u);
  EXPECT_EQ(w.started[2].first, g.data());
  EXPECT_EQ(w.started[2].second, 2);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(g[size_t(i)], float(i)) << "the sum over 2 equal ranks, halved";
  EXPECT_EQ(r.stats().started_in_backward, 2);
  EXPECT_EQ(r.stats().buckets, 3);
}

TEST(GradReducer, WithoutOverlapEverythingStartsAfterBackward) {
  FakeWorld w;
  std::vector<float> g(10, 1.0f);
  GradReducer r(w, Device::cpu, 10, 4, /*overlap=*/false);
  r.begin(g.data());
  r.from(0);
  EXPECT_TRUE(w.started.empty());
  r.finish();
  EXPECT_EQ(w.started.size(), 3u);
  EXPECT_EQ(r.stats().started_in_backward, 0);
}
