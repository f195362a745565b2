// Embedding: lookup against a double reference, id validation, and the scatter-add gradient against
// finite differences of loss = sum(w_loss * out) with repeated ids, on the serial and threaded paths.
#include <omp.h>

#include <vector>

#include "core/error.h"
#include "kernels/cpu/embedding.h"
#include "testing.h"

using namespace strata;
namespace st = strata::testing;
using st::expect_close;

namespace {

std::vector<int32_t> random_ids(int64_t N, int64_t V, uint64_t seed) {
  Rng r(seed);
  std::vector<int32_t> ids(N);
  for (auto& i : ids) i = int32_t(r.below(V));
  return ids;
}

// table[V, D], ids[N] -> out[N, D] in double.
std::vector<double> ref_embed(const std::vector<double>& table, const std::vector<int32_t>& ids, int64_t D) {
  std::vector<double> out(ids.size() * D);
  for (size_t n = 0; n < ids.size(); ++n)
    for (int64_t d = 0; d < D; ++d) out[n * D + d] = table[size_t(ids[n]) * D + d];
  return out;
}

void check_case(int64_t N, int64_t V, int64_t D, uint64_t seed) {
  std::printf("embedding N=%ld V=%ld D=%ld\n", long(N), long(V), long(D));
  auto table = st::randn(V * D, seed);
  auto ids = random_ids(N, V, seed + 1);
  if (N > 2) ids[N - 1] = ids[0];  // make sure at least one id repeats
  std::vector<float> out(N * D, 1e30f);
  cpu::embedding_forward(out.data(), table.data(), ids.data(), N, V, D);
  auto td = st::to_double(table);
  expect_close(out, ref_embed(td, ids, D), 0, 0, "out");  // a copy: exact

  auto wl = st::randn(N * D, seed + 2);
  auto dt0 = st::randn(V * D, seed + 3);
  auto dt = dt0;
  cpu::embedding_backward(dt.data(), wl.data(), ids.data(), N, D);
  std::vector<double> got(V * D);
  for (int64_t i = 0; i < V * D; ++i) got[i] = double(dt[i]) - double(dt0[i]);
  auto wld = st::to_double(wl);
  auto loss = [&] {
    auto o = ref_embed(td, ids, D);
    double s = 0;
    for (size_t i = 0; i < o.size(); ++i) s += o[i] * wld[i];
    return s;
  };
  // Each table entry collects at most N float additions of O(1) terms.
  expect_close(got, st::finite_diff(td, loss, 1e-3), 1e-6 * double(N), 1e-5, "dtable (accumulated) vs FD");
}

}  // namespace

TEST(Embedding, SmallAndOdd) {
  check_case(1, 1, 1, 1);
  check_case(5, 3, 7, 2);   // more tokens than vocabulary: ids repeat
  check_case(9, 11, 67, 3);  // D past one 64-channel block
}

TEST(Embedding, ThreadedPath) {
  // N * D above the OpenMP threshold, with many repeated ids (V << N).
  check_case(700, 5, 130, 4);
}

TEST(Embedding, RejectsIdsOutsideVocabulary) {
  std::vector<float> table(4 * 3, 1.0f), out(2 * 3);
  std::vector<int32_t> bad_hi = {1, 4}, bad_lo = {-1, 0}, ok = {3, 0};
  EXPECT_THROW(cpu::embedding_forward(out.data(), table.data(), bad_hi.data(), 2, 4, 3), Error);
  EXPECT_THROW(cpu::embedding_forward(out.data(), table.data(), bad_lo.data(), 2, 4, 3), Error);
  EXPECT_NO_THROW(cpu::embedding_forward(out.data(), table.data(), ok.data(), 2, 4, 3));
  std::vector<float> dtable(4 * 3, 0.0f), dout(2 * 3, 1.0f);
  EXPECT_THROW(cpu::embedding_backward(dtable.data(), dout.data(), bad_lo.data(), 2, 3), Error);
}

TEST(Embedding, BackwardIndependentOfThreadCount) {
  const int64_t N = 1000, V = 7, D = 256;
  auto ids = random_ids(N, V, 5);
  auto dout = st::randn(N * D, 6);
  std::vector<float> a(V * D, 0.0f), b(V * D, 0.0f);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  cpu::embedding_backward(a.data(), dout.data(), ids.data(), N, D);
  omp_set_num_threads(2);
  cpu::embedding_backward(b.data(), dout.data(), ids.data(), N, D);
  omp_set_num_threads(saved);
  EXPECT_EQ(a, b);
}
