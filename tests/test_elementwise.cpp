// The small elementwise ops (kernels/cpu/elementwise.h) against double-precision references.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/elementwise.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;

TEST(Elementwise, MatchDoubleReference) {
  const int64_t N = 100003;  // above the threading threshold, odd
  const auto x = st::randn(static_cast<size_t>(N), 1), a = st::randn(static_cast<size_t>(N), 2), y0 = st::randn(static_cast<size_t>(N), 3);
  std::vector<double> want(y0.begin(), y0.end());

  std::vector<float> y = y0;
  cpu::add_inplace(y.data(), x.data(), N);
  for (int64_t i = 0; i < N; ++i) want[i] += double(x[i]);
  st::expect_close(y, want, 0, 1e-7, "add_inplace");

  cpu::scale_inplace(y.data(), 0.25f, N);
  for (auto& w : want) w *= 0.25;
  st::expect_close(y, want, 0, 1e-7, "scale_inplace");

  cpu::mul_add_inplace(y.data(), x.data(), a.data(), N);
  for (int64_t i = 0; i < N; ++i) want[i] += double(x[i]) * double(a[i]);
  st::expect_close(y, want, 1e-7, 1e-6, "mul_add_inplace");

  std::vector<float> e(static_cast<size_t>(N));
  cpu::neg_exp(e.data(), x.data(), N);
  std::vector<double> we(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) we[i] = -std::exp(double(x[i]));
  st::expect_close(e, we, 0, 1e-6, "neg_exp");
  cpu::neg_exp(e.data(), e.data(), 3);  // in place
  EXPECT_FLOAT_EQ(e[0], float(-std::exp(we[0])));

  std::vector<float> c(static_cast<size_t>(N), 0.0f);
  cpu::copy_f32(c.data(), x.data(), N);
  EXPECT_EQ(c, x);
  cpu::copy_f32(nullptr, nullptr, 0);  // empty is a no-op
}

TEST(Elementwise, CopyStridedPairsSplitsAndMerges) {
  const int64_t rows = 70, src_ld = 13, dst_ld = 9, cols = 8;
  const auto src = st::randn(static_cast<size_t>(rows * src_ld), 10);
  std::vector<float> split(static_cast<size_t>(rows * dst_ld), -1.0f), back(static_cast<size_t>(rows * src_ld), -2.0f);
  cpu::copy_strided_pairs(split.data() + 1, dst_ld, src.data() + 3, src_ld, rows, cols, true);
  for (int64_t r = 0; r < rows; ++r) {
    ASSERT_EQ(split[size_t(r * dst_ld)], -1.0f);  // outside the block: untouched
    for (int64_t c = 0; c < cols / 2; ++c) {
      ASSERT_EQ(split[size_t(r * dst_ld + 1 + c)], src[size_t(r * src_ld + 3 + 2 * c)]) << r << "," << c;
      ASSERT_EQ(split[size_t(r * dst_ld + 1 + cols / 2 + c)], src[size_t(r * src_ld + 3 + 2 * c + 1)]) << r << "," << c;
    }
  }
  cpu::copy_strided_pairs(back.data() + 3, src_ld, split.data() + 1, dst_ld, rows, cols, false);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(back[size_t(r * src_ld + 3 + c)], src[size_t(r * src_ld + 3 + c)]);
}

TEST(Elementwise, AddStridedAccumulatesABlock) {
  const int64_t rows = 50, src_ld = 11, dst_ld = 7, cols = 5;
  const auto src = st::randn(static_cast<size_t>(rows * src_ld), 11);
  const auto dst0 = st::randn(static_cast<size_t>(rows * dst_ld), 12);
  auto dst = dst0;
  cpu::add_strided(dst.data() + 1, dst_ld, src.data() + 4, src_ld, rows, cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < dst_ld; ++c) {
      const size_t i = size_t(r * dst_ld + c);
      const bool in = c >= 1 && c < 1 + cols;
      ASSERT_EQ(dst[i], in ? dst0[i] + src[size_t(r * src_ld + 4 + c - 1)] : dst0[i]) << r << "," << c;
    }
}

TEST(Elementwise, CopyStridedMovesAColumnBlock) {
  const int64_t rows = 300, src_ld = 37, dst_ld = 20, cols = 11, c0 = 5;  // columns 5..15 of src
  const auto src = st::randn(static_cast<size_t>(rows * src_ld), 9);
  std::vector<float> dst(static_cast<size_t>(rows * dst_ld), -1.0f);
  cpu::copy_strided(dst.data() + 2, dst_ld, src.data() + c0, src_ld, rows, cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < dst_ld; ++c) {
      const bool in = c >= 2 && c < 2 + cols;
      ASSERT_EQ(dst[size_t(r * dst_ld + c)], in ? src[size_t(r * src_ld + c0 + c - 2)] : -1.0f) << r << "," << c;
    }
}
