// Core: Philox known answers, resumable RNG state, arena, tensor views and bf16, flat parameters.
#include <gtest/gtest.h>

#include <cstdint>

#include "core/arena.h"
#include "core/error.h"
#include "core/params.h"
#include "core/rng.h"
#include "core/tensor.h"

using namespace strata;

TEST(Philox, KnownAnswers) {
  // Known-answer vectors of Random123 (kat_vectors: philox4x32_10).
  auto r = philox4x32({0, 0, 0, 0}, {0, 0});
  EXPECT_EQ(r[0], 0x6627e8d5u);
  EXPECT_EQ(r[1], 0xe169c58du);
  EXPECT_EQ(r[2], 0xbc57ac4cu);
  EXPECT_EQ(r[3], 0x9b00dbd8u);
  auto s = philox4x32({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u});
  EXPECT_EQ(s[0], 0xd16cfe09u);
  EXPECT_EQ(s[1], 0x94fdccebu);
  EXPECT_EQ(s[2], 0x5001e420u);
  EXPECT_EQ(s[3], 0x24126ea1u);
}

TEST(Rng, ResumesMidBlock) {
  Rng a(42);
  for (int i = 0; i < 7; ++i) a.next_u32();  // stop inside a 4-word block
  Rng b(a.seed, a.counter);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(a.next_u32(), b.next_u32());
}

TEST(Rng, UniformAndNormalMoments) {
  Rng r(7);
  double su = 0, sn = 0, sn2 = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    float u = r.uniform();
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    su += u;
    float z = r.normal();
    sn += z;
    sn2 += double(z) * z;
  }
  EXPECT_NEAR(su / n, 0.5, 0.005);
  EXPECT_NEAR(sn / n, 0.0, 0.01);
  EXPECT_NEAR(sn2 / n, 1.0, 0.02);
}

TEST(Arena, AlignedStableAndReused) {
  Arena a(1024);
  float* p = a.alloc(3);
  float* q = a.alloc(5000);  // larger than a block: gets its own
  float* r = a.alloc(10);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(q) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(r) % 64, 0u);
  size_t cap = a.capacity_floats();
  a.reset();
  EXPECT_EQ(a.alloc(3), p);  // same memory again after reset: no new system allocation
  a.alloc(5000);
  a.alloc(10);
  EXPECT_EQ(a.capacity_floats(), cap);
}

TEST(Tensor, ViewsSlicesAndBf16) {
  Tensor t = Tensor::zeros({2, 3, 4});
  for (int i = 0; i < 24; ++i) t.f32()[i] = float(i) * 0.37f - 3.0f;
  Tensor v = t.view({6, 4});
  EXPECT_EQ(v.dim(0), 6);
  EXPECT_EQ(v.f32(), t.f32());
  Tensor s = t.slice(1, 1, 3);
  EXPECT_EQ(s.dim(1), 2);
  EXPECT_FALSE(s.is_contiguous());
  EXPECT_EQ(s.data<float>()[0], t.f32()[4]);
  EXPECT_THROW(t.view({5, 5}), Error);
  Tensor b = t.to(DType::bf16).to(DType::f32);
  for (int i = 0; i < 24; ++i) EXPECT_NEAR(b.f32()[i], t.f32()[i], std::abs(t.f32()[i]) * (1.0 / 128) + 1e-6);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f)), 1.0f);
}

TEST(ParamStore, FlatBufferWithNamedViews) {
  ParamStore ps;
  auto a = ps.add("a.weight", {3, 5}, Init::constant(2.0f), true);
  auto b = ps.add("b.bias", {7}, Init::zeros(), false);
  EXPECT_THROW(ps.add("a.weight", {1}, Init::zeros(), true), Error);
  ps.allocate(1);
  EXPECT_EQ(ps.data(a)[14], 2.0f);
  EXPECT_EQ(ps.data(b)[6], 0.0f);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(ps.data(b)) % 64, 0u);
  auto mask = ps.decay_mask();
  EXPECT_EQ(mask[size_t(ps.info(a).offset)], 1);
  EXPECT_EQ(mask[size_t(ps.info(b).offset)], 0);
  EXPECT_EQ(ps.find("b.bias"), 1);
  EXPECT_EQ(ps.find("nope"), -1);
}
