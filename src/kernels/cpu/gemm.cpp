#include "kernels/cpu/gemm.h"

#include <dnnl.h>
#include <dnnl.hpp>

#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>
#include <tuple>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace strata::cpu {

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    // BLAS semantics: the product is empty, so C = beta * C. dnnl_sgemm returns early without scaling.
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  dnnl_status_t s = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  STRATA_CHECK(s == dnnl_success, "dnnl_sgemm failed (status {}) for M={} N={} K={}", int(s), M, N, K);
}

// Widens a stored rows x cols bf16 matrix (row stride ld) to a packed fp32 one.
static std::vector<float> widen_bf16(const uint16_t* X, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> out(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[size_t(r * cols + c)] = bf16_to_f32(X[r * ld + c]);
  return out;
}

namespace {

// One bf16 product as a oneDNN matmul primitive, built once per problem: a training step repeats
// the same few dozen (shapes, strides, alpha, beta), and building one costs far more than running
// a small one. Transposes are only strides; alpha is the output scale and beta a sum post-op.
struct Bf16Matmul {
  std::optional<dnnl::matmul> prim;  // empty: oneDNN has only its reference kernel here
  dnnl::memory::desc a, b, c;
};
using Bf16Key = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, uint32_t, uint32_t>;

dnnl::engine& cpu_engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

const Bf16Matmul& bf16_matmul(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, int64_t lda,
                              int64_t ldb, float beta, int64_t ldc) {
  static std::mutex mu;
  static std::map<Bf16Key, Bf16Matmul> cache;
  const Bf16Key key{trans_a, trans_b, M, N, K, lda, ldb, ldc, bits_of(alpha), bits_of(beta)};
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  using md = dnnl::memory::desc;
  using dt = dnnl::memory::data_type;
  Bf16Matmul m;
  m.a = md({M, K}, dt::bf16, trans_a ? dnnl::memory::dims{1, lda} : dnnl::memory::dims{lda, 1});
  m.b = md({K, N}, dt::bf16, trans_b ? dnnl::memory::dims{1, ldb} : dnnl::memory::dims{ldb, 1});
  m.c = md({M, N}, dt::f32, dnnl::memory::dims{ldc, 1});
  dnnl::primitive_attr attr;
  if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
  if (beta != 0.0f) {
    dnnl::post_ops po;
    po.append_sum(beta);
    attr.set_post_ops(po);
  }
  try {
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(m.a, m.b, m.c), attr, cpu_engine());
    // Without a bf16 ISA (AVX512-BF16 / AMX) oneDNN would run its scalar reference kernel, far
    // slower than widening to fp32 for sgemm.
    if (std::string_view(pd.impl_info_str()).substr(0, 3) != "ref") m.prim.emplace(pd);
  } catch (const dnnl::error&) {
    // Unimplemented for this problem: the widening path below serves it.
  }
  return cache.emplace(key, std::move(m)).first->second;
}

}  // namespace

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const int64_t a_rows = trans_a ? K : M, a_cols = trans_a ? M : K;
  const int64_t b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
  if (K > 0) {
    const Bf16Matmul& m = bf16_matmul(trans_a, trans_b, M, N, K, alpha, lda, ldb, beta, ldc);
    if (m.prim) {
      thread_local dnnl::stream stream(cpu_engine());
      dnnl::memory a(m.a, cpu_engine(), const_cast<uint16_t*>(A)), b(m.b, cpu_engine(), const_cast<uint16_t*>(B)),
          c(m.c, cpu_engine(), C);
      m.prim->execute(stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
      stream.wait();
      return;
    }
  }
  std::vector<float> a = widen_bf16(A, a_rows, a_cols, lda), b = widen_bf16(B, b_rows, b_cols, ldb);
  gemm(trans_a, trans_b, M, N, K, alpha, a.data(), a_cols, b.data(), b_cols, beta, C, ldc);
}

void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N, int64_t IC,
                    int64_t OC) {
  gemm(false, true, N, OC, IC, 1.0f, inp, IC, weight, IC, 0.0f, out, OC);
  if (bias) {
#pragma omp parallel for if (N * OC > 32768)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < OC; ++o) out[n * OC + o] += bias[o];
  }
}

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int64_t IC, int64_t OC, bool accumulate_dinp) {
  if (dinp) gemm(false, false, N, IC, OC, 1.0f, dout, OC, weight, IC, accumulate_dinp ? 1.0f : 0.0f, dinp, IC);
  if (dweight) gemm(true, false, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dweight, IC);
  if (dbias) {
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < OC; ++o) dbias[o] += dout[n * OC + o];
  }
}

}  // namespace strata::cpu
