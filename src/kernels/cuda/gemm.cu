// Dense products on CUDA through cuBLASLt (see gemm.h; the CPU twin is kernels/cpu/gemm.cpp).
//
// Row-major to column-major: a row-major X[r, c] with row stride ld is, read column-major, X^T with
// leading dimension ld. So the row-major C = op(A) op(B) is the column-major C^T = op(B)^T op(A)^T:
// cuBLASLt's first operand is our B (transposed iff trans_b), its second our A (iff trans_a), and
// its m, n are our N, M. No data moves.
//
// cuBLASLt picks an algorithm per problem with a heuristic query that costs tens of microseconds;
// the answer depends only on the shapes, types, epilogue and pointer alignments, so it is cached
// under those (a training step repeats the same few dozen problems).
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gemm.h"

namespace strata::cuda {
namespace {

std::atomic<bool> g_allow_tf32{false};

// Largest power of two (<= 256) dividing the address: cuBLASLt's algorithms state the alignment
// they need, and a view into the flat parameter buffer or an arena may be only 4-byte aligned.
uint32_t alignment_of(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > 1 && (a % al) != 0) al >>= 1;
  return al;
}

struct Problem {
  int32_t transa, transb;  // cuBLASLt's view (column-major operands)
  int64_t m, n, k, lda, ldb, ldc;
  int32_t ab_type, compute;
  int32_t bias;  // 1: bias epilogue
  uint32_t align_a, align_b, align_c, align_bias;
  bool operator==(const Problem& o) const { return std::memcmp(this, &o, sizeof(Problem)) == 0; }
};
struct ProblemHash {
  size_t operator()(const Problem& p) const {
    // FNV-1a over the bytes (the struct has no padding holes that vary: it is zeroed before filling).
    const auto* b = reinterpret_cast<const unsigned char*>(&p);
    size_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof(Problem); ++i) h = (h ^ b[i]) * 1099511628211ull;
    return h;
  }
};

struct AlgoCache {
  std::mutex mu;
  std::unordered_map<Problem, cublasLtMatmulAlgo_t, ProblemHash> algos;
};
AlgoCache& algo_cache() {
  static AlgoCache c;
  return c;
}

// RAII for the cuBLASLt descriptors of one call.
struct Descs {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~Descs() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

// Column-major D[m, n] = alpha * op(A) op(B) + beta * C (+ bias[m] broadcast over columns), C = D.
// A is stored [transa ? k : m, transa ? m : k] with leading dimension lda, B likewise with n.
// Returns false (nothing queued) only when a bias epilogue was asked for and no algorithm offers
// it; every other failure throws.
bool lt_matmul(bool transa, bool transb, int64_t m, int64_t n, int64_t k, float alpha, const void* A,
               int64_t lda, const void* B, int64_t ldb, cudaDataType_t ab_type, float beta, float* C, int64_t ldc,
               const float* bias) {
  const cublasComputeType_t compute = (ab_type == CUDA_R_32F && g_allow_tf32.load(std::memory_order_relaxed))
                                          ? CUBLAS_COMPUTE_32F_FAST_TF32
                                          : CUBLAS_COMPUTE_32F;
  Descs d;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&d.op, compute, CUDA_R_32F));
  const cublasOperation_t ta = transa ? CUBLAS_OP_T : CUBLAS_OP_N, tb = transb ? CUBLAS_OP_T : CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  if (bias) {
    // The bias has D's type (fp32) by default: nothing more to set.
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.a, ab_type, uint64_t(transa ? k : m), uint64_t(transa ? m : k), lda));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.b, ab_type, uint64_t(transb ? n : k), uint64_t(transb ? k : n), ldb));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.c, CUDA_R_32F, uint64_t(m), uint64_t(n), ldc));

  Problem p;
  std::memset(&p, 0, sizeof(p));
  p.transa = transa, p.transb = transb, p.m = m, p.n = n, p.k = k, p.lda = lda, p.ldb = ldb, p.ldc = ldc;
  p.ab_type = int32_t(ab_type), p.compute = int32_t(compute), p.bias = bias != nullptr;
  p.align_a = alignment_of(A), p.align_b = alignment_of(B), p.align_c = alignment_of(C);
  p.align_bias = bias ? alignment_of(bias) : 0;

  cublasLtMatmulAlgo_t algo;
  bool found = false;
  {
    std::lock_guard<std::mutex> lock(algo_cache().mu);
    auto it = algo_cache().algos.find(p);
    if (it != algo_cache().algos.end()) algo = it->second, found = true;
  }
  if (!found) {
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&d.pref));
    const uint64_t ws = kCublasLtWorkspaceBytes;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                      sizeof(ws)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &p.align_a,
                                                      sizeof(uint32_t)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &p.align_b,
                                                      sizeof(uint32_t)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &p.align_c,
                                                      sizeof(uint32_t)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &p.align_c,
                                                      sizeof(uint32_t)));
    cublasLtMatmulHeuristicResult_t result{};
    int count = 0;
    const cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(cublaslt_handle(), d.op, d.a, d.b, d.c, d.c, d.pref, 1, &result, &count);
    if (st != CUBLAS_STATUS_SUCCESS || count == 0) {
      if (bias) return false;  // the caller adds the bias itself
      STRATA_CHECK(false,
                   "cuBLASLt has no algorithm for m={} n={} k={} lda={} ldb={} ldc={} type={} (alignments {}/{}/{}): "
                   "status {}",
                   m, n, k, lda, ldb, ldc, int(ab_type), p.align_a, p.align_b, p.align_c, int(st));
    }
    algo = result.algo;
    std::lock_guard<std::mutex> lock(algo_cache().mu);
    algo_cache().algos.emplace(p, algo);
  }
  CUBLAS_CHECK(cublasLtMatmul(cublaslt_handle(), d.op, &alpha, A, d.a, B, d.b, &beta, C, d.c, C, d.c, &algo,
                              cublaslt_workspace(current_stream()), kCublasLtWorkspaceBytes, current_stream()));
  return true;
}

// C[i, j] = beta * C[i, j] (0 where beta == 0, so that garbage or NaN in C is not propagated), the
// whole product when K == 0.
__global__ void scale_matrix_kernel(float* __restrict__ C, int64_t M, int64_t N, int64_t ldc, float beta) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < M * N; i += int64_t(gridDim.x) * blockDim.x) {
    float& c = C[(i / N) * ldc + i % N];
    c = beta == 0.0f ? 0.0f : beta * c;
  }
}

// out[n, o] += bias[o]   out[N, OC]: the fallback when no fused-epilogue algorithm exists.
__global__ void add_bias_kernel(float* __restrict__ out, const float* __restrict__ bias, int64_t N, int64_t OC) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < N * OC; i += int64_t(gridDim.x) * blockDim.x)
    out[i] += bias[i % OC];
}

struct RowValue {  // f(n, d) = x[n, d] (row stride ld), for column sums
  const float* x;
  int64_t ld;
  __device__ float operator()(int64_t n, int64_t d) const { return x[n * ld + d]; }
};

void check_dims(const char* what, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, int64_t lda,
                int64_t ldb, int64_t ldc) {
  STRATA_CHECK(M >= 0 && N >= 0 && K >= 0, "{}: negative size M={} N={} K={}", what, M, N, K);
  // Row strides must cover a stored row (BLAS's leading-dimension rule, in row-major terms).
  const int64_t a_cols = trans_a ? M : K, b_cols = trans_b ? K : N;
  STRATA_CHECK(lda >= (a_cols > 1 ? a_cols : 1) && ldb >= (b_cols > 1 ? b_cols : 1) && ldc >= (N > 1 ? N : 1),
               "{}: row strides lda={} ldb={} ldc={} too small for M={} N={} K={} (trans_a={}, trans_b={})", what,
               lda, ldb, ldc, M, N, K, trans_a, trans_b);
}

void gemm_any(const char* what, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const void* A, int64_t lda, const void* B, int64_t ldb, cudaDataType_t type, float beta, float* C,
              int64_t ldc) {
  check_dims(what, trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  if (K == 0) {
    STRATA_LAUNCH((grid_1d(M * N), kBlock1d, 0, current_stream()), scale_matrix_kernel)(C, M, N, ldc, beta);
    CUDA_CHECK_LAUNCH();
    return;
  }
  lt_matmul(trans_b, trans_a, N, M, K, alpha, B, ldb, A, lda, type, beta, C, ldc, nullptr);
}

}  // namespace

void set_allow_tf32(bool allow) { g_allow_tf32.store(allow); }
bool allow_tf32() { return g_allow_tf32.load(); }

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_any("cuda::gemm", trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, CUDA_R_32F, beta, C, ldc);
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_any("cuda::gemm_bf16", trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, CUDA_R_16BF, beta, C, ldc);
}

void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N, int64_t IC,
                    int64_t OC) {
  STRATA_CHECK(N >= 0 && IC >= 0 && OC >= 0, "cuda::linear_forward: negative size N={} IC={} OC={}", N, IC, OC);
  if (N == 0 || OC == 0) return;
  cudaStream_t stream = current_stream();
  bool fused = false;
  if (IC == 0) {
    gemm(false, true, N, OC, IC, 1.0f, inp, 1, weight, 1, 0.0f, out, OC);
  } else {
    // gemm(false, true, N, OC, IC, ...) spelled out so the bias can ride along: column-major
    // out^T[OC, N] = W op(T) [IC, OC] times inp^T [IC, N]; cuBLASLt's bias runs along m = OC.
    // The epilogue reads the bias with vector loads; a bias view that is not 16-byte aligned takes
    // the separate kernel instead.
    if (bias && alignment_of(bias) >= 16)
      fused = lt_matmul(true, false, OC, N, IC, 1.0f, weight, IC, inp, IC, CUDA_R_32F, 0.0f, out, OC, bias);
    if (!fused) lt_matmul(true, false, OC, N, IC, 1.0f, weight, IC, inp, IC, CUDA_R_32F, 0.0f, out, OC, nullptr);
  }
  if (bias && !fused) {
    STRATA_LAUNCH((grid_1d(N * OC), kBlock1d, 0, stream), add_bias_kernel)(out, bias, N, OC);
    CUDA_CHECK_LAUNCH();
  }
}

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int64_t IC, int64_t OC, bool accumulate_dinp) {
  STRATA_CHECK(N >= 0 && IC >= 0 && OC >= 0, "cuda::linear_backward: negative size N={} IC={} OC={}", N, IC, OC);
  if (dinp) gemm(false, false, N, IC, OC, 1.0f, dout, OC, weight, IC, accumulate_dinp ? 1.0f : 0.0f, dinp, IC);
  if (dweight) gemm(true, false, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dweight, IC);
  if (dbias) column_sum_accumulate(dbias, N, OC, RowValue{dout, OC}, current_stream());
}

}  // namespace strata::cuda
