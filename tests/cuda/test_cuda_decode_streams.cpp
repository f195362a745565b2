// Decoding on CUDA from several host threads at once, and MoE decode steps as CUDA graphs.
//
// Two decoders (two hybrid models with Mamba, attention and MoE layers) decode on two threads at
// the same time, with graphs on, each thread on its own stream (or both on the legacy default
// stream): every logit equals the model's training forward (1e-4, as tests/cuda/test_cuda_model.cpp)
// and is bitwise what the same decoder gives alone. What this guards: each step graph has its own
// stream, scratch pool and cuBLASLt workspace (a shared workspace corrupts concurrent GEMMs), and
// steps are ordered after prefill and the cache's initialisation by events, not by a copy that
// happens to synchronise (kernels/cuda/graph.h).
//
// Also: an MoE model's steps are recorded (no host synchronisation inside a step), and a bad token
// id or expert index still fails with a message naming it, directly and from inside a graph.
#include <gtest/gtest.h>

#include <cstring>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "cuda_testing.h"
#include "infer/decoder.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/graph.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/stream.h"
#include "model_testing.h"
#include "models/model.h"
#include "testing.h"

using namespace strata;

namespace {

// One model and its prompts: B sequences of T tokens; prefill takes the first T1, steps the rest.
struct Job {
  const char* name;
  ModelConfig cfg;
  int64_t B, T, T1;
  std::vector<int32_t> ids;  // [B, T]
};

Job job(const char* name, const std::string& pattern, int mamba_version, const char* attention, int64_t B,
        uint64_t seed) {
  Job j{name, strata::testing::tiny_model(pattern, mamba_version, attention, 2), B, 21, 8, {}};
  j.ids = strata::testing::random_tokens(B * j.T, seed);
  return j;
}

// The logits a decode produces: after prefill ([B, V] at position T1 - 1), then after each step
// ([B, V] at positions T1 .. T - 1), concatenated.
struct Decoded {
  std::vector<float> logits;
  int64_t steps = 0, graph_steps = 0, instantiations = 0, updates = 0;
};

// Prefill then steps through a Decoder with graphs on, on this thread (on a stream of its own when
// own_stream). Never throws: an error is kept for the calling thread.
Decoded decode(Model& m, const Job& j, bool own_stream, std::exception_ptr* error) {
  Decoded out;
  try {
    std::optional<cuda::ThreadStream> stream;
    if (own_stream) stream.emplace();
    const int64_t V = m.vocab();
    Decoder dec(m, j.B, j.T);
    std::vector<int32_t> head(size_t(j.B * j.T1)), col(size_t(j.B));
    for (int64_t b = 0; b < j.B; ++b)
      for (int64_t t = 0; t < j.T1; ++t) head[size_t(b * j.T1 + t)] = j.ids[size_t(b * j.T + t)];
    std::vector<float> lg(size_t(j.B * V));
    dec.prefill(head.data(), j.T1, lg.data());
    out.logits.insert(out.logits.end(), lg.begin(), lg.end());
    for (int64_t t = j.T1; t < j.T; ++t) {
      for (int64_t b = 0; b < j.B; ++b) col[size_t(b)] = j.ids[size_t(b * j.T + t)];
      dec.step(col.data(), lg.data());
      out.logits.insert(out.logits.end(), lg.begin(), lg.end());
      ++out.steps;
    }
    out.graph_steps = dec.graph_steps();
    out.instantiations = dec.graph_instantiations();
    out.updates = dec.graph_updates();
  } catch (...) {
    *error = std::current_exception();
  }
  return out;
}

// The training forward's logits in the order decode() returns them.
std::vector<float> forward_like_decode(Model& m, const Job& j) {
  const int64_t V = m.vocab();
  std::vector<float> fwd(size_t(j.B * j.T * V)), out;
  Arena a(Device::cuda);
  Ctx ctx{Device::cuda, &a, false};
  m.forward_logits(ctx, fwd.data(), j.ids.data(), j.B, j.T, nullptr);
  for (int64_t t = j.T1 - 1; t < j.T; ++t)
    for (int64_t b = 0; b < j.B; ++b)
      out.insert(out.end(), fwd.begin() + (b * j.T + t) * V, fwd.begin() + (b * j.T + t + 1) * V);
  return out;
}

size_t bit_mismatches(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return std::max(a.size(), b.size());
  size_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return n;
}

void rethrow_if(const std::exception_ptr& e, const char* who) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    FAIL() << who << " threw: " << x.what();
  }
}

class CudaDecodeStreams : public ::testing::TestWithParam<bool> {};

TEST_P(CudaDecodeStreams, TwoDecodersOnTwoThreadsEqualForwardAndAlone) {
  STRATA_SKIP_WITHOUT_CUDA();
  const bool own_streams = GetParam();
  const Job jobs[2] = {job("mamba2_gqa_moe", "M*E-", 2, "gqa", 2, 11), job("moe_mla_mamba1", "E*M", 1, "mla", 1, 12)};
  Model m0(jobs[0].cfg, 3), m1(jobs[1].cfg, 4);
  Model* models[2] = {&m0, &m1};
  for (Model* m : models) m->params().to_device(Device::cuda);

  std::vector<float> want[2];
  Decoded alone[2], together[2];
  for (int i = 0; i < 2; ++i) {
    want[i] = forward_like_decode(*models[i], jobs[i]);
    std::exception_ptr err;
    alone[i] = decode(*models[i], jobs[i], own_streams, &err);
    rethrow_if(err, jobs[i].name);
  }
  {
    std::exception_ptr err[2];
    std::thread t0([&] { together[0] = decode(m0, jobs[0], own_streams, &err[0]); });
    std::thread t1([&] { together[1] = decode(m1, jobs[1], own_streams, &err[1]); });
    t0.join();
    t1.join();
    rethrow_if(err[0], jobs[0].name);
    rethrow_if(err[1], jobs[1].name);
  }
  for (int i = 0; i < 2; ++i) {
    const std::string name = jobs[i].name;
    strata::testing::expect_close(alone[i].logits, want[i], 1e-4, 0.0, name + " alone vs forward");
    strata::testing::expect_close(together[i].logits, want[i], 1e-4, 0.0, name + " concurrent vs forward");
    EXPECT_EQ(bit_mismatches(together[i].logits, alone[i].logits), 0u)
        << name << ": decoding beside another decoder changed its logits";
    // Every step after the first (which sizes the arena and the scratch pool) is a graph, MoE included.
    for (const Decoded* d : {&alone[i], &together[i]}) {
      EXPECT_EQ(d->graph_steps, d->steps - 1) << name;
      EXPECT_EQ(d->instantiations + d->updates, d->graph_steps) << name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Streams, CudaDecodeStreams, ::testing::Values(true, false),
                         [](const auto& info) { return std::string(info.param ? "OwnStreams" : "LegacyStream"); });

// A model of MoE layers only: no host synchronisation inside its step, so every step after the first
// is recorded, and recordings after the first update the instantiated graph in place.
TEST(CudaDecodeGraphs, MoeStepsAreRecorded) {
  STRATA_SKIP_WITHOUT_CUDA();
  Model m(strata::testing::tiny_model("EE", 2, "gqa", 2), 5);
  m.params().to_device(Device::cuda);
  Job j = job("moe", "EE", 2, "gqa", 2, 13);
  j.T1 = 1;
  std::exception_ptr err;
  const Decoded d = decode(m, j, false, &err);
  rethrow_if(err, "moe");
  strata::testing::expect_close(d.logits, forward_like_decode(m, j), 1e-4, 0.0, "moe graph decode vs forward");
  std::printf("moe: %ld of %ld steps through CUDA graphs (%ld instantiations, %ld updates)\n", long(d.graph_steps),
              long(d.steps), long(d.instantiations), long(d.updates));
  EXPECT_EQ(d.graph_steps, d.steps - 1);
  EXPECT_GE(d.instantiations, 1);
  EXPECT_GT(d.updates, 0);
}

// A step is ordered against the caller's stream by events alone: the caller queues what the step
// reads and then what reads the step's result, with no host synchronisation in between (the
// Decoder's prefill and cache initialisation, then its logits copy, in miniature).
TEST(CudaDecodeGraphs, StepsAreOrderedAgainstTheCallersStreamByEvents) {
  STRATA_SKIP_WITHOUT_CUDA();
  using strata::testing::DeviceVec;
  const int64_t n = 4096;
  cuda::ThreadStream caller;
  DeviceVec<float> one(std::vector<float>(static_cast<size_t>(n), 1.0f)), x{size_t(n)}, y{size_t(n)}, z{size_t(n)};
  cuda::StepGraph g;
  auto step = [&] {  // y = 2 x, on the graph's stream
    cuda::copy_f32(y.p, x.p, n);
    cuda::scale_inplace(y.p, 2.0f, n);
  };
  for (int r = 1; r <= 6; ++r) {
    cuda::add_inplace(x.p, one.p, n);  // x = r, queued on the caller's stream
    if (r % 2) {
      std::string why;
      ASSERT_TRUE(g.run(step, &why)) << why;
    } else {
      g.run_direct(step);
    }
    cuda::add_inplace(z.p, y.p, n);  // z += 2r, queued on the caller's stream
  }
  const std::vector<float> h = z.host();  // waits for the caller's stream only
  size_t wrong = 0;
  for (float v : h) wrong += v != 42.0f;  // 2 (1 + ... + 6)
  EXPECT_EQ(wrong, 0u) << "z[0] = " << h[0] << ": a step ran out of order with the caller's stream";
  EXPECT_EQ(g.instantiations() + g.updates(), 3);
}

std::string what_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A bad token id: the Decoder refuses it before anything runs, with graphs on.
TEST(CudaDecodeGraphs, BadTokenIdFailsClearly) {
  STRATA_SKIP_WITHOUT_CUDA();
  Model m(strata::testing::tiny_model("E*", 2, "gqa", 1), 6);
  m.params().to_device(Device::cuda);
  Decoder dec(m, 1, 4);
  std::vector<float> lg(size_t(m.vocab()));
  const int32_t ok = 7, bad = int32_t(m.vocab()) + 3;
  dec.step(&ok, lg.data());
  dec.step(&ok, lg.data());
  const std::string msg = what_of([&] { dec.step(&bad, lg.data()); });
  EXPECT_NE(msg.find("token id 259 outside the vocabulary"), std::string::npos) << msg;
  EXPECT_EQ(dec.pos(), 2);
  dec.step(&ok, lg.data());
  EXPECT_EQ(dec.pos(), 3);
  EXPECT_EQ(dec.graph_steps(), 2);
}

// Bad indices reaching kernels inside a recorded step: nothing stops to check, the kernel reports
// into the stream's record, and StepGraph::synchronize() throws the message a direct call gives.
TEST(CudaDecodeGraphs, BadIndexInsideAGraphFailsAtSynchronize) {
  STRATA_SKIP_WITHOUT_CUDA();
  using strata::testing::DeviceVec;
  const int64_t N = 3, V = 16, D = 8, E = 4, k = 2;
  DeviceVec<float> table(strata::testing::randn(size_t(V * D), 1)), out(size_t(N * D));
  DeviceVec<int32_t> good_ids(std::vector<int32_t>{1, 2, 3}), bad_ids(std::vector<int32_t>{1, 20, -1});
  DeviceVec<int32_t> good_idx(std::vector<int32_t>{0, 1, 2, 3, 1, 0}), bad_idx(std::vector<int32_t>{0, 1, 2, 9, 1, 0});
  DeviceVec<int32_t> offsets(size_t(E + 1)), row_token(size_t(N * k)), row_of(size_t(N * k));
  const int32_t* ids = good_ids.p;
  const int32_t* idx = good_idx.p;
  auto work = [&] {
    cuda::embedding_forward(out.p, table.p, ids, N, V, D);
    cuda::moe_permute_indices(offsets.p, row_token.p, row_of.p, idx, N, E, k);
  };

  cuda::StepGraph g;
  g.run_direct(work);  // sizes the scratch pool
  g.synchronize();

  // Directly: the op itself throws, as its CPU twin does.
  ids = bad_ids.p;
  std::string msg = what_of([&] { g.run_direct(work); });
  EXPECT_NE(msg.find("embedding: token id 20 at position 1 outside the vocabulary [0, 16)"), std::string::npos)
      << msg;
  g.synchronize();

  // Recorded: the launch returns, the step's end reports.
  std::string why;
  ASSERT_TRUE(g.run(work, &why)) << why;
  msg = what_of([&] { g.synchronize(); });
  EXPECT_NE(msg.find("embedding: token id 20 at position 1 outside the vocabulary [0, 16)"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("recorded CUDA graph"), std::string::npos) << msg;

  ids = good_ids.p;
  idx = bad_idx.p;
  ASSERT_TRUE(g.run(work, &why)) << why;
  msg = what_of([&] { g.synchronize(); });
  EXPECT_NE(msg.find("moe_permute_indices: expert index 9 at assignment 3 outside [0, 4)"), std::string::npos)
      << msg;

  // Reported once: the record is clear again, and good inputs run clean.
  idx = good_idx.p;
  ASSERT_TRUE(g.run(work, &why)) << why;
  EXPECT_NO_THROW(g.synchronize());
  EXPECT_GE(g.instantiations() + g.updates(), 3);
}

}  // namespace
