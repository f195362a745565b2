// Whole models on the GPU against the same models on the CPU: logits of the training forward,
// decode == forward on the device (with and without CUDA graphs), and a short training run whose
// loss curve tracks the CPU's. Skipped, with the reason, where no CUDA device is usable.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "model_testing.h"
#include "testing.h"
#include "core/rng.h"
#include "cuda_testing.h"
#include "infer/decoder.h"
#include "models/model.h"
#include "train/config_load.h"
#include "train/trainer.h"

using namespace strata;

namespace {

// The shared tiny models at twice their width: wide enough for the kernels' tiles to matter.
ModelConfig tiny(const std::string& pattern, int mamba_version, bool mla) {
  return strata::testing::tiny_model(pattern, mamba_version, mla ? "mla" : "gqa", 2);
}

struct Case {
  const char* name;
  const char* pattern;
  int mamba_version;
  bool mla;
  bool selective = true;  // mamba.selective (false: the non-selective Mamba-1 baseline)
  int window = 0;         // attention.window (sliding window; T = 37 decodes past it)
};

class CudaModel : public ::testing::TestWithParam<Case> {};

// fp32 on both sides (TF32 is opt-in and off): the differences are summation order only.
TEST_P(CudaModel, ForwardMatchesCpuAndDecodeMatchesForward) {
  STRATA_SKIP_WITHOUT_CUDA();
  const Case k = GetParam();
  ModelConfig cfg = tiny(k.pattern, k.mamba_version, k.mla);
  cfg.mamba.selective = k.selective;
  cfg.attention.window = k.window;
  Model cpu_m(cfg, 3), gpu_m(cfg, 3);
  gpu_m.params().to_device(Device::cuda);
  const int64_t T = 37, V = cpu_m.vocab();
  const auto ids = strata::testing::random_tokens(T, 5);

  std::vector<float> want(size_t(T * V)), got(size_t(T * V));
  {
    Arena a;
    Ctx ctx{Device::cpu, &a, false};
    cpu_m.forward_logits(ctx, want.data(), ids.data(), 1, T, nullptr);
  }
  {
    Arena a(Device::cuda);
    Ctx ctx{Device::cuda, &a, false};
    gpu_m.forward_logits(ctx, got.data(), ids.data(), 1, T, nullptr);
  }
  strata::testing::expect_close(got, want, 1e-4, 0.0, std::string(k.name) + " cuda forward vs cpu");

  for (bool graphs : {false, true}) {
    Decoder dec(gpu_m, 1, T, DecoderOptions{graphs});
    std::vector<float> steps(size_t(T * V));
    for (int64_t t = 0; t < T; ++t) dec.step(&ids[size_t(t)], steps.data() + t * V);
    strata::testing::expect_close(steps, got, 1e-4, 0.0,
                                  std::string(k.name) + (graphs ? " graph" : " direct") + " decode vs forward");
    if (graphs) {
      std::printf("%s: %ld of %ld steps through CUDA graphs\n", k.name, long(dec.graph_steps()), long(T));
      // Every block kind records (MoE included: its index check runs on the device), every step
      // after the first.
      EXPECT_EQ(dec.graph_steps(), T - 1) << k.name;
    }
  }

  // Prefill with forward, then steps, against the CPU doing the same.
  const int64_t T1 = 20;
  Decoder gd(gpu_m, 1, T), cd(cpu_m, 1, T);
  std::vector<float> g(static_cast<size_t>(V)), c(static_cast<size_t>(V));  // not size_t(V): a declaration
  gd.prefill(ids.data(), T1, g.data());
  cd.prefill(ids.data(), T1, c.data());
  strata::testing::expect_close(g, c, 1e-4, 0.0, std::string(k.name) + " prefill");
  for (int64_t t = T1; t < T; ++t) {
    gd.step(&ids[size_t(t)], g.data());
    cd.step(&ids[size_t(t)], c.data());
    strata::testing::expect_close(g, c, 1e-4, 0.0, std::string(k.name) + " step after prefill");
  }
}

INSTANTIATE_TEST_SUITE_P(Blocks, CudaModel,
                         ::testing::Values(Case{"attention", "*", 2, false}, Case{"mamba1", "M", 1, false},
                                           Case{"mamba2", "M", 2, false}, Case{"mlp", "-", 2, false},
                                           Case{"moe", "E", 2, false}, Case{"mla", "*", 2, true},
                                           Case{"jamba_mix", "M-*E", 2, false}, Case{"mla_mix", "M*E-", 1, true},
                                           Case{"mamba1_nonselective", "M", 1, false, false},
                                           Case{"window_mix", "M*-*", 1, false, false, 8},
                                           Case{"mla_window", "*", 2, true, true, 8}),
                         [](const auto& info) { return std::string(info.param.name); });

std::vector<double> losses(const std::string& metrics_path) {
  std::vector<double> out;
  std::ifstream f(metrics_path);
  std::string line;
  while (std::getline(f, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) out.push_back(j["loss"].get<double>());
  }
  return out;
}

// A few hundred steps of a tiny hybrid on each device from the same seed: the loss curves agree
// closely (fp32; the GPU sums in another order, so they are not bit-identical). No MoE layer here:
// a routing decision flipped by rounding would fork the two runs without either being wrong.
TEST(CudaTraining, LossCurveTracksCpu) {
  STRATA_SKIP_WITHOUT_CUDA();
  const std::string d = strata::testing::scratch_dir("cuda_train");
  std::vector<std::vector<double>> curves;
  for (const char* dev : {"cpu", "cuda"}) {
    Config cfg = parse_config(strata::testing::tiny_config("", 300), d + "/c.yaml",
                              {std::string("++train.device=") + dev, "++train.run_dir=" + d + "/" + dev,
                               "++data.path=" + d + "/data.txt", "model.pattern=M*-M", "++train.save_every=1000", "++train.log_every=10"});
    TrainOptions o;
    o.quiet = true;
    TrainResult r = train(cfg, to_yaml(cfg), o);
    EXPECT_EQ(r.step, 300);
    curves.push_back(losses(d + "/" + dev + "/metrics.jsonl"));
  }
  ASSERT_EQ(curves[0].size(), curves[1].size());
  ASSERT_GE(curves[0].size(), 20u);
  double worst = 0;
  for (size_t i = 0; i < curves[0].size(); ++i) worst = std::max(worst, std::abs(curves[0][i] - curves[1][i]));
  std::printf("loss cpu %.4f -> %.4f, cuda %.4f -> %.4f, max |diff| %.4f\n", curves[0].front(), curves[0].back(),
              curves[1].front(), curves[1].back(), worst);
  EXPECT_LT(curves[0].back(), curves[0].front() - 0.5) << "the CPU run did not learn";
  EXPECT_LT(worst, 0.05) << "the CUDA loss curve drifted from the CPU's";
}

}  // namespace
