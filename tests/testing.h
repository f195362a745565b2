#pragma once
// Helpers shared by the kernel tests: random inputs, double-precision comparison, and central
// finite differences in double. Tests print max/mean differences before asserting.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "core/rng.h"

namespace strata::testing {

// A whole file's bytes ("" when it cannot be read): for tests that inspect what was written.
inline std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

inline std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.0f) {
  Rng r(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = r.normal() * scale;
  return v;
}
inline std::vector<float> uniform(size_t n, uint64_t seed, float lo, float hi) {
  Rng r(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = lo + (hi - lo) * r.uniform();
  return v;
}
template <class T> std::vector<double> to_double(const std::vector<T>& v) { return {v.begin(), v.end()}; }

struct Diff {
  double max_abs = 0, mean_abs = 0, max_rel = 0;
};
template <class A, class B> Diff diff(const A& a, const B& b) {
  Diff d;
  EXPECT_EQ(a.size(), b.size());
  size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    double e = std::abs(double(a[i]) - double(b[i]));
    d.max_abs = std::max(d.max_abs, e);
    d.mean_abs += e;
    d.max_rel = std::max(d.max_rel, e / (std::abs(double(b[i])) + 1e-6));
  }
  if (n) d.mean_abs /= double(n);
  return d;
}

// Asserts |a - b| <= atol + rtol*|b| elementwise, printing the summary first.
template <class A, class B> void expect_close(const A& a, const B& b, double atol, double rtol, const std::string& what) {
  Diff d = diff(a, b);
  std::printf("  %-28s max_abs=%.3e mean_abs=%.3e max_rel=%.3e\n", what.c_str(), d.max_abs, d.mean_abs, d.max_rel);
  size_t bad = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    if (!(std::abs(double(a[i]) - double(b[i])) <= atol + rtol * std::abs(double(b[i])))) {
      if (bad++ < 5) ADD_FAILURE() << what << "[" << i << "]: got " << a[i] << " want " << b[i];
    }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " elements out of tolerance";
}

// Central finite difference of a scalar function f of the vector x (in double), at every index.
inline std::vector<double> finite_diff(std::vector<double>& x, const std::function<double()>& f, double h = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    double keep = x[i];
    x[i] = keep + h;
    double fp = f();
    x[i] = keep - h;
    double fm = f();
    x[i] = keep;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

}  // namespace strata::testing
