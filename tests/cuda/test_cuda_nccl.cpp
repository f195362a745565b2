// The GPU data-parallel path (train/distributed_nccl.h): NCCL sums gradient buckets on the device and
// all-gathers ZeRO-1's parameters, and, where a node has two GPUs and mpirun, two GPU ranks end where
// one GPU ends (and ZeRO-1 changes no bit). Each case skips,
// saying why, without a device, in a build without NCCL (CPU, emulator) or with fewer GPUs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "../cli.h"
#include "cuda_testing.h"
#include "train/checkpoint.h"
#include "train/distributed.h"
#include "train/distributed_nccl.h"

using namespace strata;
using namespace strata::testing;

#define SKIP_WITHOUT_NCCL()                                                                        \
  STRATA_SKIP_WITHOUT_CUDA();                                                                      \
  if (!nccl_built()) GTEST_SKIP() << "skipped: this build has no NCCL (a CUDA build finds it when installed)"

TEST(CudaNccl, BucketsSumOnTheDeviceInAWorldOfOne) {
  SKIP_WITHOUT_NCCL();
  auto nccl = make_nccl_communicator(world());  // one rank: the sum of one is the value itself
  nccl->set_timeout(60);
  std::vector<float> h(1000);
  for (size_t i = 0; i < h.size(); ++i) h[i] = float(i) * 0.5f - 3.0f;
  DeviceVec<float> g(h);
  GradReducer r(*nccl, Device::cuda, int64_t(h.size()), 300, /*overlap=*/true);
  r.begin(g.p);
  r.from(700);  // [700, 1000) starts here
  r.from(0);
  r.finish();
  EXPECT_EQ(r.stats().buckets, 4);
  EXPECT_EQ(g.host(), h);
  EXPECT_NE(nccl->backend().find("NCCL"), std::string::npos) << nccl->backend();
}

// ZeRO-1's in-place all-gather of the parameters: a world of one gathers its own block, unchanged.
TEST(CudaNccl, AllGatherInPlaceInAWorldOfOne) {
  SKIP_WITHOUT_NCCL();
  auto nccl = make_nccl_communicator(world());
  nccl->set_timeout(60);
  std::vector<float> h(1001);
  for (size_t i = 0; i < h.size(); ++i) h[i] = float(i) * 0.25f - 7.0f;
  DeviceVec<float> p(h);
  nccl->all_gather(p.p, shard_counts(int64_t(h.size()), 1), "the test's all-gather");
  EXPECT_EQ(p.host(), h);
}

TEST(CudaNccl, TwoGpuRanksMatchOneGpu) {
  SKIP_WITHOUT_NCCL();
  if (std::system("command -v mpirun >/dev/null 2>&1") != 0) GTEST_SKIP() << "skipped: mpirun is not on PATH";
  FILE* p = popen("nvidia-smi -L 2>/dev/null | grep -c '^GPU'", "r");
  int gpus = 0;
  if (p) {
    if (std::fscanf(p, "%d", &gpus) != 1) gpus = 0;
    pclose(p);
  }
  if (gpus < 2) GTEST_SKIP() << "skipped: NCCL needs a GPU per rank, and this node has " << gpus;
  std::string d = scratch_dir("nccl_dp");
  write_text(d + "/a.yaml", "model: {d_model: 32, pattern: \"M*-\", mamba: {version: 2, d_state: 8, head_dim: 16, chunk: 8},\n"
                            "        attention: {heads: 4, kv_heads: 2}, mlp: {hidden: 48}}\n"
                            "train: {steps: 20, batch: 4, seq: 24, seed: 7, eval_every: 10, eval_batches: 2, device: cuda}\n"
                            "optim: {lr: 3.0e-3, warmup: 4}\n"
                            "data: {kind: text, path: data.txt, val_fraction: 0.1}\n");
  auto one = run("train a.yaml train.run_dir=one --quiet", d);
  ASSERT_EQ(one.code, 0) << one.out;
  auto two = run_raw("mpirun --allow-run-as-root --oversubscribe -np 2 '" + strata_bin() + "' train a.yaml train.run_dir=two --quiet", d);
  ASSERT_EQ(two.code, 0) << two.out;
  Checkpoint a = load_checkpoint(*newest_good_checkpoint(d + "/one")), b = load_checkpoint(*newest_good_checkpoint(d + "/two"));
  ASSERT_EQ(a.params.size(), b.params.size());
  double worst = 0;
  for (size_t i = 0; i < a.params.size(); ++i)
    for (size_t j = 0; j < a.params[i].data.size(); ++j)
      worst = std::max(worst, std::fabs(double(a.params[i].data[j]) - double(b.params[i].data[j])));
  std::printf("params after 20 steps, 1 GPU vs 2 GPU ranks: max |diff| %.3g\n", worst);
  EXPECT_LE(worst, 1e-5);
  // ZeRO-1 (the update on each rank's shard, NCCL's all-gather): bitwise the 2 ranks without it.
  auto zero = run_raw("mpirun --allow-run-as-root --oversubscribe -np 2 '" + strata_bin() +
                          "' train a.yaml train.run_dir=zero train.dist_zero1=true --quiet", d);
  ASSERT_EQ(zero.code, 0) << zero.out;
  Checkpoint z = load_checkpoint(*newest_good_checkpoint(d + "/zero"));
  ASSERT_EQ(z.params.size(), b.params.size());
  for (size_t i = 0; i < b.params.size(); ++i) EXPECT_EQ(z.params[i].data, b.params[i].data) << b.params[i].name;
  for (size_t i = 0; i < b.adam_v.size(); ++i) EXPECT_EQ(z.adam_v[i].data, b.adam_v[i].data) << b.adam_v[i].name;
}
