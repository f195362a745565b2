// GEMM backends on the shapes of a small model's training step, in GFLOP/s:
//   onednn   dnnl_sgemm through strata::cpu::gemm (the backend in use)
//   eigen    Eigen::Map of the row-major operands, C.noalias() = op(A) * op(B)
//   openblas cblas_sgemm (when the build found a BLAS: STRATA_HAVE_BLAS)
//   packed   the cache-blocked, register-tiled OpenMP kernel below
// Each linear layer [tokens, IC] -> [tokens, OC] runs three products per step (gemm.h):
//   fwd   out[T, OC]  = inp[T, IC] @ W[OC, IC]^T       -> gemm NT, M=T,  N=OC, K=IC
//   dinp  dinp[T, IC] = dout[T, OC] @ W[OC, IC]        -> gemm NN, M=T,  N=IC, K=OC
//   dw    dW[OC, IC] += dout[T, OC]^T @ inp[T, IC]     -> gemm TN, M=OC, N=IC, K=T
// Every backend's result is checked against oneDNN's before it is timed. Results: docs/kernels.md.
#include <benchmark/benchmark.h>
#include <omp.h>

// Eigen 3.4's AVX-512 packing code trips GCC 12's -Wmaybe-uninitialized when inlined here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Core>
#pragma GCC diagnostic pop
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/rng.h"
#include "kernels/cpu/gemm.h"

#ifdef STRATA_HAVE_BLAS
#include <cblas.h>
// OpenBLAS runs its own thread pool; weak so that a reference BLAS still links.
extern "C" void openblas_set_num_threads(int) __attribute__((weak));
extern "C" char* openblas_get_config() __attribute__((weak));
#endif

namespace {

// ---------------------------------------------------------------------------------------------
// packed: a BLIS-style kernel. op(A) is packed into MC x KC blocks of MR-row micro-panels, op(B)
// into KC x N blocks of NR-column micro-panels (both k-major, zero-padded to whole panels), so the
// micro-kernel reads both contiguously whatever the transposes. Loop order keeps one B micro-panel
// (KC x NR = 32 KiB) in L1 across the MR-row panels of an A block that sits in L2. The micro-kernel
// holds an MR x NR tile of C in MR * NR/16 vector registers and does MR * NR/16 FMAs per k.
// GCC vector extensions: one zmm per v16 with AVX-512 (two ymm with AVX2).
typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));  // unaligned rows of C

// MR = 12 and KC = 128 / 192 measured the same within noise on this machine.
constexpr int MR = 8, NR = 32, KC = 256, MC = 96, NB = 256;  // NB: columns per parallel task
static_assert(MC % MR == 0 && NB % NR == 0);

struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};
using Buf = std::unique_ptr<float[], AlignedFree>;
Buf alloc_floats(size_t n) { return Buf(static_cast<float*>(std::aligned_alloc(64, ((n * 4 + 63) / 64) * 64))); }

// op(A)[i0:i0+mc, k0:k0+kc] -> Ap[mc/MR panels][kc][MR]
void pack_a(float* Ap, bool ta, const float* A, int64_t lda, int64_t i0, int64_t mc, int64_t k0, int64_t kc) {
  for (int64_t ip = 0; ip < mc; ip += MR) {
    const int64_t m = std::min<int64_t>(MR, mc - ip);
    float* dst = Ap + ip * kc;
    for (int64_t k = 0; k < kc; ++k) {
      for (int64_t i = 0; i < m; ++i)
        dst[k * MR + i] = ta ? A[(k0 + k) * lda + i0 + ip + i] : A[(i0 + ip + i) * lda + k0 + k];
      for (int64_t i = m; i < MR; ++i) dst[k * MR + i] = 0.0f;
    }
  }
}

// op(B)[k0:k0+kc, j0:j0+nc] -> Bp[nc/NR panels][kc][NR]
void pack_b_panel(float* dst, bool tb, const float* B, int64_t ldb, int64_t j0, int64_t n, int64_t k0, int64_t kc) {
  for (int64_t k = 0; k < kc; ++k) {
    if (!tb && n == NR) {
      std::memcpy(dst + k * NR, B + (k0 + k) * ldb + j0, NR * sizeof(float));
      continue;
    }
    for (int64_t j = 0; j < n; ++j) dst[k * NR + j] = tb ? B[(j0 + j) * ldb + k0 + k] : B[(k0 + k) * ldb + j0 + j];
    for (int64_t j = n; j < NR; ++j) dst[k * NR + j] = 0.0f;
  }
}

// C[MR, NR] tile (row stride ldc) = alpha * Ap Bp + beta * C; m x n of it is stored.
void micro_kernel(int64_t kc, const float* __restrict Ap, const float* __restrict Bp, float* C, int64_t ldc, float alpha,
                  float beta, int64_t m, int64_t n) {
  v16 c[MR][2] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const v16 b0 = *reinterpret_cast<const v16*>(Bp + k * NR);
    const v16 b1 = *reinterpret_cast<const v16*>(Bp + k * NR + 16);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const float a = Ap[k * MR + i];
      c[i][0] += a * b0;
      c[i][1] += a * b1;
    }
  }
  if (m == MR && n == NR) {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      v16u* row = reinterpret_cast<v16u*>(C + i * ldc);
      if (beta == 0.0f) {
        row[0] = alpha * c[i][0];
        row[1] = alpha * c[i][1];
      } else {
        row[0] = alpha * c[i][0] + beta * row[0];
        row[1] = alpha * c[i][1] + beta * row[1];
      }
    }
    return;
  }
  alignas(64) float t[MR][NR];
  std::memcpy(t, c, sizeof t);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      C[i * ldc + j] = alpha * t[i][j] + (beta == 0.0f ? 0.0f : beta * C[i * ldc + j]);
}

void packed_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // empty product: C = beta * C
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  const int nthreads = omp_get_max_threads();
  const int64_t npanels = (N + NR - 1) / NR, npad = npanels * NR, kblocks = (K + KC - 1) / KC;
  // All of op(B) is packed up front (K x npad floats: a few MiB at most here), so the parallel
  // region forks once and each task then walks K with its C tile kept in L2.
  Buf Bp = alloc_floats(size_t(K) * npad);
  Buf Ap = alloc_floats(size_t(nthreads) * MC * KC);
  // Row blocks: a multiple of the thread count when M is short (the dW products, M = OC), so that
  // no thread idles on a tail block; MR-aligned and at most MC rows each.
  int64_t mblocks = (M + MC - 1) / MC;
  mblocks = std::min((mblocks + nthreads - 1) / nthreads * nthreads, (M + MR - 1) / MR);
  const int64_t mc_step = ((M + mblocks - 1) / mblocks + MR - 1) / MR * MR;
  mblocks = (M + mc_step - 1) / mc_step;
  const int64_t nblocks = (N + NB - 1) / NB;
#pragma omp parallel
  {
#pragma omp for schedule(static) collapse(2)
    for (int64_t kb = 0; kb < kblocks; ++kb)
      for (int64_t p = 0; p < npanels; ++p) {
        const int64_t k0 = kb * KC, kc = std::min<int64_t>(KC, K - k0);
        pack_b_panel(Bp.get() + k0 * npad + p * NR * kc, tb, B, ldb, p * NR, std::min<int64_t>(NR, N - p * NR), k0,
                     kc);
      }
    float* ap = Ap.get() + size_t(omp_get_thread_num()) * MC * KC;
    // Tasks are (row block, column block) pairs so that a short M (the dW products) still splits.
#pragma omp for schedule(static) collapse(2)
    for (int64_t ib = 0; ib < mblocks; ++ib)
      for (int64_t jb = 0; jb < nblocks; ++jb) {
        const int64_t i0 = ib * mc_step, mc = std::min<int64_t>(mc_step, M - i0);
        const int64_t j_end = std::min<int64_t>(N, (jb + 1) * NB);
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
          const int64_t kc = std::min<int64_t>(KC, K - k0);
          const float beta_k = k0 == 0 ? beta : 1.0f;  // later K blocks accumulate onto the first
          pack_a(ap, ta, A, lda, i0, mc, k0, kc);
          const float* bk = Bp.get() + k0 * npad;
          for (int64_t j0 = jb * NB; j0 < j_end; j0 += NR)
            for (int64_t ip = 0; ip < mc; ip += MR)
              micro_kernel(kc, ap + ip * kc, bk + (j0 / NR) * NR * kc, C + (i0 + ip) * ldc + j0, ldc, alpha, beta_k,
                           std::min<int64_t>(MR, mc - ip), std::min<int64_t>(NR, N - j0));
        }
      }
  }
}

// ---------------------------------------------------------------------------------------------
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using CMap = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;
using MMap = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;

void eigen_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  CMap a(A, ta ? K : M, ta ? M : K, Eigen::OuterStride<>(lda));
  CMap b(B, tb ? N : K, tb ? K : N, Eigen::OuterStride<>(ldb));
  MMap c(C, M, N, Eigen::OuterStride<>(ldc));
  if (beta == 0.0f) c.setZero();
  else if (beta != 1.0f) c *= beta;
  if (!ta && !tb) c.noalias() += alpha * a * b;
  else if (!ta && tb) c.noalias() += alpha * a * b.transpose();
  else if (ta && !tb) c.noalias() += alpha * a.transpose() * b;
  else c.noalias() += alpha * a.transpose() * b.transpose();
}

#ifdef STRATA_HAVE_BLAS
void blas_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M), int(N), int(K),
              alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}
#endif

using GemmFn = void (*)(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                        float, float*, int64_t);

struct Operands {
  std::vector<float> A, B, C;
};
Operands make_operands(bool ta, bool tb, int64_t M, int64_t N, int64_t K) {
  (void)ta;
  (void)tb;
  strata::Rng r(1234);
  Operands o{std::vector<float>(M * K), std::vector<float>(K * N), std::vector<float>(M * N)};
  for (auto& x : o.A) x = r.normal();
  for (auto& x : o.B) x = r.normal();
  for (auto& x : o.C) x = r.normal();
  return o;
}

// Relative max difference against oneDNN on these operands, with beta = 1 (so C is read too).
double check_against_onednn(GemmFn fn, bool ta, bool tb, int64_t M, int64_t N, int64_t K) {
  Operands o = make_operands(ta, tb, M, N, K);
  std::vector<float> ref = o.C, got = o.C;
  const int64_t lda = ta ? M : K, ldb = tb ? K : N;
  strata::cpu::gemm(ta, tb, M, N, K, 0.5f, o.A.data(), lda, o.B.data(), ldb, 1.0f, ref.data(), N);
  fn(ta, tb, M, N, K, 0.5f, o.A.data(), lda, o.B.data(), ldb, 1.0f, got.data(), N);
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    worst = std::max(worst, std::abs(double(got[i]) - double(ref[i])) / (std::sqrt(double(K)) + std::abs(ref[i])));
  return worst;
}

// args: M, N, K, ta, tb
void run(benchmark::State& state, GemmFn fn) {
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  const bool ta = state.range(3), tb = state.range(4);
  const double err = check_against_onednn(fn, ta, tb, M, N, K);
  if (!(err < 1e-5)) {
    state.SkipWithError(("result differs from oneDNN: " + std::to_string(err)).c_str());
    return;
  }
  Operands o = make_operands(ta, tb, M, N, K);
  const int64_t lda = ta ? M : K, ldb = tb ? K : N;
  for (auto _ : state) {
    // beta = 1 as in the dW accumulation; the forward's beta = 0 differs by one pass over C.
    fn(ta, tb, M, N, K, 1.0f, o.A.data(), lda, o.B.data(), ldb, 1.0f, o.C.data(), N);
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPs"] =
      benchmark::Counter(2.0 * double(M) * double(N) * double(K), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = omp_get_max_threads();
}

void onednn_fn(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  strata::cpu::gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// The three products of linear layers [T = 2048 tokens, IC] -> [T, OC] of a d_model 128..1024 model.
void shapes(benchmark::internal::Benchmark* b) {
  const int64_t T = 2048;
  const std::pair<int64_t, int64_t> layers[] = {{128, 128}, {256, 256}, {512, 512}, {1024, 1024}, {256, 1024}, {1024, 256}};
  for (auto [ic, oc] : layers) {
    b->Args({T, oc, ic, 0, 1});   // fwd  NT
    b->Args({T, ic, oc, 0, 0});   // dinp NN
    b->Args({oc, ic, T, 1, 0});   // dW   TN
  }
  b->ArgNames({"M", "N", "K", "ta", "tb"})->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

BENCHMARK_CAPTURE(run, onednn, onednn_fn)->Apply(shapes);
BENCHMARK_CAPTURE(run, eigen, eigen_gemm)->Apply(shapes);
#ifdef STRATA_HAVE_BLAS
BENCHMARK_CAPTURE(run, openblas, blas_gemm)->Apply(shapes);
#endif
BENCHMARK_CAPTURE(run, packed, packed_gemm)->Apply(shapes);

int main(int argc, char** argv) {
  // Every backend gets the same thread count (OMP_NUM_THREADS, default: all cores).
  const int threads = omp_get_max_threads();
  Eigen::setNbThreads(threads);
#ifdef STRATA_HAVE_BLAS
  if (openblas_set_num_threads) openblas_set_num_threads(threads);
  if (openblas_get_config) std::printf("BLAS: %s\n", openblas_get_config());
  else std::printf("BLAS: not OpenBLAS (no openblas_get_config)\n");
#else
  std::printf("BLAS: none found at build time (openblas row skipped)\n");
#endif
  std::printf("threads: %d\n", threads);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
