// Device plumbing (core/device.h): host allocation and copies, the parameter store and the arena
// unchanged on cpu, and a clear refusal of cuda where it cannot run (built without CUDA, or no
// device). Where a device exists, the same buffers round-trip through it.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cli.h"

#include "core/arena.h"
#include "core/device.h"
#include "core/error.h"
#include "core/params.h"
#include "core/tensor.h"

using namespace strata;

TEST(Device, HostArraysAndCopies) {
  DeviceArray<float> a(5, Device::cpu);
  for (int i = 0; i < 5; ++i) a.data()[i] = float(i);
  DeviceArray<float> b = a.to(Device::cpu);
  EXPECT_EQ(b.to_host(), (std::vector<float>{0, 1, 2, 3, 4}));
  b.zero();
  EXPECT_EQ(b.to_host(), std::vector<float>(5, 0.0f));
  DeviceArray<float> c = std::move(a);
  EXPECT_EQ(c.size(), 5u);
  EXPECT_EQ(a.size(), 0u);
}

TEST(Device, CudaRefusedWithReasonWhenUnavailable) {
  if (cuda_available()) GTEST_SKIP() << "a CUDA device is present: the refusal path cannot be exercised";
  const std::string why = cuda_unavailable_reason();
  std::printf("cuda unavailable: %s\n", why.c_str());
  EXPECT_TRUE(why.find("built without CUDA") != std::string::npos || why.find("no CUDA device") != std::string::npos)
      << why;
  try {
    require_device(Device::cuda, "train.device");
    FAIL() << "require_device(cuda) did not throw";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("train.device: device cuda: " + why), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(require_device(Device::cpu, "x"));
  EXPECT_THROW(Tensor::empty({2, 3}, DType::f32, Device::cuda), InputError);
  EXPECT_THROW(DeviceArray<float>(4, Device::cuda), InputError);
  ParamStore ps;
  ps.add("w", {4}, Init::constant(2.0f), true);
  ps.allocate(1);
  EXPECT_THROW(ps.to_device(Device::cuda), InputError);
  EXPECT_EQ(ps.device(), Device::cpu);
  EXPECT_EQ(ps.host_flat()[3], 2.0f);  // untouched by the refused move
  Arena arena(Device::cuda);
  EXPECT_THROW(arena.alloc(16), InputError);
}

TEST(Device, ParamStoreRoundTripsThroughCuda) {
  if (!cuda_available()) GTEST_SKIP() << cuda_unavailable_reason();
  ParamStore ps;
  ps.add("a", {3, 5}, Init::normal(1.0f), true);
  ps.add("b", {7}, Init::constant(0.5f), false);
  ps.allocate(42);
  const std::vector<float> before = ps.host_flat();
  ps.to_device(Device::cuda);
  EXPECT_EQ(ps.device(), Device::cuda);
  EXPECT_EQ(ps.host_flat(), before);
  EXPECT_EQ(ps.host_flat_grad(), std::vector<float>(before.size(), 0.0f));
  std::vector<float> next(before.size(), 1.25f);
  ps.set_flat_from_host(next.data());
  ps.to_device(Device::cpu);
  EXPECT_EQ(ps.host_flat(), next);
  Arena arena(Device::cuda);
  float* p = arena.alloc_zeroed(1000);
  std::vector<float> back(1000, 9.0f);
  copy_bytes(back.data(), Device::cpu, p, Device::cuda, back.size() * sizeof(float));
  EXPECT_EQ(back, std::vector<float>(1000, 0.0f));
  Tensor t = Tensor::zeros({4, 4}, DType::f32, Device::cuda);
  EXPECT_EQ(t.device(), Device::cuda);
}

// `strata train ... train.device=cuda` refuses with exit code 2 and the reason, before writing
// anything, where CUDA cannot run.
TEST(Device, TrainOnCudaRefusedCleanlyWhenUnavailable) {
  if (cuda_available()) GTEST_SKIP() << "a CUDA device is present: the refusal path cannot be exercised";
  const std::string d = strata::testing::scratch_dir("device_refusal");
  strata::testing::write_text(d + "/tiny.yaml", strata::testing::tiny_config("", 2));
  const auto r = strata::testing::run("train tiny.yaml train.device=cuda train.run_dir=run", d);
  std::printf("%s", r.out.c_str());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("train.device: device cuda: " + cuda_unavailable_reason()), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(d + "/run"));
}
