// cuBLASLt on the CPU emulator: D = epilogue(alpha op(A) op(B) + beta C + bias) in cuBLAS's
// column-major convention, fp32 or bf16 operands with fp32 accumulation (tf32-rounded operands
// under CUBLAS_COMPUTE_32F_FAST_TF32), descriptors checked as cuBLASLt checks them. The product is
// queued on its stream like a kernel (so graphs capture it) and is computed through the workspace it
// is given: the K range is split, each part's partial product is written to the workspace, and the
// parts are summed from there into D in a fixed order. A too-small or missing workspace is refused,
// and two streams sharing one workspace corrupt each other, as on a GPU.
#include <cublasLt.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "runtime_internal.h"

struct cublasLtContext {
  int alive = 1;
};

struct cublasLtMatmulDescOpaque_st {
  cublasComputeType_t compute;
  cudaDataType_t scale;
  int32_t pointer_mode = CUBLASLT_POINTER_MODE_HOST;
  int32_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N, transc = CUBLAS_OP_N;
  uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
  int64_t bias_batch_stride = 0;
  int32_t bias_type = -1;  // -1: D's type
};

struct cublasLtMatrixLayoutOpaque_st {
  cudaDataType_t type;
  int32_t order = CUBLASLT_ORDER_COL;
  uint64_t rows = 0, cols = 0;
  int64_t ld = 0;
  int32_t batch = 1;
  int64_t stride = 0;  // elements between batch members
};

struct cublasLtMatmulPreferenceOpaque_st {
  uint64_t max_workspace = 0;
  uint32_t align[4] = {256, 256, 256, 256};  // A, B, C, D: cuBLASLt's default assumption
};

namespace {

using strata_emu::require_device_range;

constexpr uint64_t kAlgoMagic = 0x53545241544c5431ull;  // "STRATLT1"
constexpr int kMaxSplits = 4;

size_t elem_size(int t) { return t == CUDA_R_32F ? 4 : t == CUDA_R_16BF ? 2 : 0; }

uint32_t alignment_of(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > 1 && (a % al) != 0) al >>= 1;
  return al;
}

template <class T>
bool read_attr(T& out, const void* buf, size_t size) {
  if (!buf || size != sizeof(T)) return false;
  std::memcpy(&out, buf, sizeof(T));
  return true;
}

// The checked shape of one product.
struct Problem {
  int64_t m = 0, n = 0, k = 0;
  bool ta = false, tb = false;
  int ab_type = CUDA_R_32F, cd_type = CUDA_R_32F, bias_type = CUDA_R_32F;
  bool tf32 = false;
  bool bias = false;
  int act = 0;  // 0 none, 1 relu, 2 gelu
  int batch = 1;
};

bool layout_ok(const cublasLtMatrixLayoutOpaque_st& l) {
  const uint64_t lead = l.order == CUBLASLT_ORDER_COL ? l.rows : l.cols;
  return l.ld >= int64_t(lead > 1 ? lead : 1);
}

cublasStatus_t check_problem(const cublasLtMatmulDescOpaque_st& d, const cublasLtMatrixLayoutOpaque_st& A,
                             const cublasLtMatrixLayoutOpaque_st& B, const cublasLtMatrixLayoutOpaque_st& C,
                             const cublasLtMatrixLayoutOpaque_st& D, Problem& p) {
  if (d.compute != CUBLAS_COMPUTE_32F && d.compute != CUBLAS_COMPUTE_32F_PEDANTIC &&
      d.compute != CUBLAS_COMPUTE_32F_FAST_TF32)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  if (d.scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (d.transc != CUBLAS_OP_N) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (d.pointer_mode != CUBLASLT_POINTER_MODE_HOST && d.pointer_mode != CUBLASLT_POINTER_MODE_DEVICE)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  // Operand types: A and B alike; fp32 -> fp32, bf16 -> bf16 or fp32; tf32 only from fp32.
  if (A.type != B.type || C.type != D.type) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (A.type == CUDA_R_32F) {
    if (D.type != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  } else if (A.type == CUDA_R_16BF) {
    if (D.type != CUDA_R_32F && D.type != CUDA_R_16BF) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (d.compute == CUBLAS_COMPUTE_32F_FAST_TF32) return CUBLAS_STATUS_NOT_SUPPORTED;
  } else {
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  for (const auto* l : {&A, &B, &C, &D})
    if (l->order != CUBLASLT_ORDER_COL && l->order != CUBLASLT_ORDER_ROW) return CUBLAS_STATUS_NOT_SUPPORTED;
  switch (d.epilogue) {
    case CUBLASLT_EPILOGUE_DEFAULT: p.act = 0, p.bias = false; break;
    case CUBLASLT_EPILOGUE_RELU: p.act = 1, p.bias = false; break;
    case CUBLASLT_EPILOGUE_GELU: p.act = 2, p.bias = false; break;
    case CUBLASLT_EPILOGUE_BIAS: p.act = 0, p.bias = true; break;
    case CUBLASLT_EPILOGUE_RELU_BIAS: p.act = 1, p.bias = true; break;
    case CUBLASLT_EPILOGUE_GELU_BIAS: p.act = 2, p.bias = true; break;
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  p.bias_type = d.bias_type == -1 ? int(D.type) : d.bias_type;
  if (p.bias && p.bias_type != CUDA_R_32F && p.bias_type != CUDA_R_16BF) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (d.transa != CUBLAS_OP_N && d.transa != CUBLAS_OP_T && d.transa != CUBLAS_OP_C) return CUBLAS_STATUS_INVALID_VALUE;
  if (d.transb != CUBLAS_OP_N && d.transb != CUBLAS_OP_T && d.transb != CUBLAS_OP_C) return CUBLAS_STATUS_INVALID_VALUE;
  p.ta = d.transa != CUBLAS_OP_N, p.tb = d.transb != CUBLAS_OP_N;
  // Shapes: op(A) is m x k, op(B) k x n, C and D m x n.
  p.m = int64_t(D.rows), p.n = int64_t(D.cols);
  p.k = int64_t(p.ta ? A.rows : A.cols);
  if (int64_t(p.ta ? A.cols : A.rows) != p.m) return CUBLAS_STATUS_INVALID_VALUE;
  if (int64_t(p.tb ? B.cols : B.rows) != p.k || int64_t(p.tb ? B.rows : B.cols) != p.n)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (C.rows != D.rows || C.cols != D.cols) return CUBLAS_STATUS_INVALID_VALUE;
  for (const auto* l : {&A, &B, &C, &D})
    if (!layout_ok(*l)) return CUBLAS_STATUS_INVALID_VALUE;
  if (A.batch != D.batch || B.batch != D.batch || C.batch != D.batch || D.batch < 1)
    return CUBLAS_STATUS_INVALID_VALUE;
  p.batch = D.batch;
  p.ab_type = A.type, p.cd_type = D.type;
  p.tf32 = d.compute == CUBLAS_COMPUTE_32F_FAST_TF32;
  return CUBLAS_STATUS_SUCCESS;
}

// K-splits for a workspace of `bytes`: one fp32 partial product per split (0: no workspace used).
int splits_for(const Problem& p, uint64_t bytes) {
  const uint64_t part = uint64_t(p.m) * uint64_t(p.n) * sizeof(float);
  if (p.k == 0 || part == 0 || bytes < part) return 0;
  int64_t s = p.k / 16;
  if (s < 1) s = 1;
  if (s > kMaxSplits) s = kMaxSplits;
  if (uint64_t(s) > bytes / part) s = int64_t(bytes / part);
  return int(s);
}

size_t workspace_for(const Problem& p, int splits) {
  return size_t(splits) * size_t(p.m) * size_t(p.n) * sizeof(float);
}

float tf32_round(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;  // to nearest, ties away (cvt.rna)
  std::memcpy(&x, &u, 4);
  return x;
}

float load(const void* base, int type, int64_t idx) {
  if (type == CUDA_R_32F) return static_cast<const float*>(base)[idx];
  const uint32_t u = uint32_t(static_cast<const uint16_t*>(base)[idx]) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

void store(void* base, int type, int64_t idx, float v) {
  if (type == CUDA_R_32F) {
    static_cast<float*>(base)[idx] = v;
    return;
  }
  uint32_t u;
  std::memcpy(&u, &v, 4);
  const uint16_t h = std::isnan(v) ? uint16_t(0x7fc0) : uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  static_cast<uint16_t*>(base)[idx] = h;
}

// Element (i, j) of a layout.
int64_t at(const cublasLtMatrixLayoutOpaque_st& l, int64_t i, int64_t j) {
  return l.order == CUBLASLT_ORDER_COL ? i + j * l.ld : i * l.ld + j;
}
// Bytes a matrix of the layout spans (one batch member).
size_t extent(const cublasLtMatrixLayoutOpaque_st& l) {
  if (l.rows == 0 || l.cols == 0) return 0;
  return size_t(at(l, int64_t(l.rows) - 1, int64_t(l.cols) - 1) + 1) * elem_size(l.type);
}

float activate(float v, int act) {
  if (act == 1) return v > 0.0f ? v : 0.0f;
  if (act == 2) return 0.5f * v * (1.0f + std::tanh(0.7978845608028654f * (v + 0.044715f * v * v * v)));
  return v;
}

struct MatmulCall {
  Problem p;
  cublasLtMatrixLayoutOpaque_st A, B, C, D;
  const void *a, *b, *c, *bias;
  void* d;
  float alpha, beta;
  const float *alpha_dev = nullptr, *beta_dev = nullptr;  // CUBLASLT_POINTER_MODE_DEVICE
  int64_t bias_stride = 0;
  float* ws;
  int splits;

  void run() const {
    float al = alpha, be = beta;
    if (alpha_dev) {
      require_device_range("cublasLtMatmul alpha", alpha_dev, sizeof(float));
      require_device_range("cublasLtMatmul beta", beta_dev, sizeof(float));
      al = *alpha_dev, be = *beta_dev;
    }
    const int64_t m = p.m, n = p.n, k = p.k;
    const size_t mn = size_t(m) * size_t(n);
    std::vector<float> opa(size_t(m) * size_t(k)), opb(size_t(n) * size_t(k)), acc;
    for (int bt = 0; bt < p.batch; ++bt) {
      const char* a_b = static_cast<const char*>(a) + bt * A.stride * int64_t(elem_size(A.type));
      const char* b_b = static_cast<const char*>(b) + bt * B.stride * int64_t(elem_size(B.type));
      const char* c_b = c ? static_cast<const char*>(c) + bt * C.stride * int64_t(elem_size(C.type)) : nullptr;
      char* d_b = static_cast<char*>(d) + bt * D.stride * int64_t(elem_size(D.type));
      const char* bias_b = bias ? static_cast<const char*>(bias) + bt * bias_stride * int64_t(elem_size(p.bias_type))
                                : nullptr;
      const bool product = al != 0.0f && k > 0;  // BLAS: alpha == 0 reads neither A nor B
      if (product) {
        require_device_range("cublasLtMatmul A", a_b, extent(A));
        require_device_range("cublasLtMatmul B", b_b, extent(B));
        // op(A) row i and op(B) column j, contiguous over k.
        for (int64_t i = 0; i < m; ++i)
          for (int64_t q = 0; q < k; ++q) {
            const float v = load(a_b, A.type, p.ta ? at(A, q, i) : at(A, i, q));
            opa[size_t(i * k + q)] = p.tf32 ? tf32_round(v) : v;
          }
        for (int64_t j = 0; j < n; ++j)
          for (int64_t q = 0; q < k; ++q) {
            const float v = load(b_b, B.type, p.tb ? at(B, j, q) : at(B, q, j));
            opb[size_t(j * k + q)] = p.tf32 ? tf32_round(v) : v;
          }
      }
      if (be != 0.0f) require_device_range("cublasLtMatmul C", c_b, extent(C));
      require_device_range("cublasLtMatmul D", d_b, extent(D));
      if (p.bias) require_device_range("cublasLtMatmul bias", bias_b, size_t(m) * elem_size(p.bias_type));
      // The partial products over the K splits go to the workspace, then are summed from it.
      float* parts = ws;
      const int s_count = splits > 0 ? splits : 1;
      if (!parts) {
        acc.assign(mn, 0.0f);
        parts = acc.data();
      } else {
        require_device_range("cublasLtMatmul workspace", ws, workspace_for(p, splits));
      }
      for (int s = 0; s < s_count; ++s) {
        const int64_t k0 = k * s / s_count, k1 = k * (s + 1) / s_count;
        float* part = parts + size_t(s) * mn;
        for (int64_t j = 0; j < n; ++j)
          for (int64_t i = 0; i < m; ++i) {
            float sum = 0.0f;
            if (product) {
              const float* ra = &opa[size_t(i * k)];
              const float* rb = &opb[size_t(j * k)];
              for (int64_t q = k0; q < k1; ++q) sum += ra[q] * rb[q];
            }
            part[size_t(i + j * m)] = sum;
          }
      }
      for (int64_t j = 0; j < n; ++j)
        for (int64_t i = 0; i < m; ++i) {
          float sum = 0.0f;
          for (int s = 0; s < s_count; ++s) sum += parts[size_t(s) * mn + size_t(i + j * m)];
          float v = al * sum;
          if (be != 0.0f) v += be * load(c_b, C.type, at(C, i, j));  // beta == 0: C is not read
          if (p.bias) v += load(bias_b, p.bias_type, i);
          store(d_b, D.type, at(D, i, j), activate(v, p.act));
        }
    }
  }
};

}  // namespace

cublasStatus_t cublasLtCreate(cublasLtHandle_t* lightHandle) {
  if (!lightHandle) return CUBLAS_STATUS_INVALID_VALUE;
  *lightHandle = new cublasLtContext;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t lightHandle) {
  if (!lightHandle) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete lightHandle;
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasLtGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

const char* cublasLtGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    case CUBLAS_STATUS_LICENSE_ERROR: return "an error detected when checking the current licensing";
  }
  return "unknown error";
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* matmulDesc, cublasComputeType_t computeType,
                                        cudaDataType_t scaleType) {
  if (!matmulDesc) return CUBLAS_STATUS_INVALID_VALUE;
  auto* d = new cublasLtMatmulDescOpaque_st;
  d->compute = computeType;
  d->scale = scaleType;
  *matmulDesc = d;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t matmulDesc) {
  delete matmulDesc;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t size) {
  if (!d) return CUBLAS_STATUS_INVALID_VALUE;
  bool ok = false;
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: {
      int32_t v;
      if ((ok = read_attr(v, buf, size))) d->compute = cublasComputeType_t(v);
      break;
    }
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE: {
      int32_t v;
      if ((ok = read_attr(v, buf, size))) d->scale = cudaDataType_t(v);
      break;
    }
    case CUBLASLT_MATMUL_DESC_POINTER_MODE: ok = read_attr(d->pointer_mode, buf, size); break;
    case CUBLASLT_MATMUL_DESC_TRANSA: ok = read_attr(d->transa, buf, size); break;
    case CUBLASLT_MATMUL_DESC_TRANSB: ok = read_attr(d->transb, buf, size); break;
    case CUBLASLT_MATMUL_DESC_TRANSC: ok = read_attr(d->transc, buf, size); break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE: ok = read_attr(d->epilogue, buf, size); break;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: ok = read_attr(d->bias, buf, size); break;
    case CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE: ok = read_attr(d->bias_batch_stride, buf, size); break;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: ok = read_attr(d->bias_type, buf, size); break;
    default: return CUBLAS_STATUS_INVALID_VALUE;
  }
  return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* matLayout, cudaDataType type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
  if (!matLayout) return CUBLAS_STATUS_INVALID_VALUE;
  auto* l = new cublasLtMatrixLayoutOpaque_st;
  l->type = type, l->rows = rows, l->cols = cols, l->ld = ld;
  *matLayout = l;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t matLayout) {
  delete matLayout;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr,
                                                const void* buf, size_t size) {
  if (!l) return CUBLAS_STATUS_INVALID_VALUE;
  bool ok = false;
  switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_TYPE: {
      uint32_t v;
      if ((ok = read_attr(v, buf, size))) l->type = cudaDataType_t(v);
      break;
    }
    case CUBLASLT_MATRIX_LAYOUT_ORDER: ok = read_attr(l->order, buf, size); break;
    case CUBLASLT_MATRIX_LAYOUT_ROWS: ok = read_attr(l->rows, buf, size); break;
    case CUBLASLT_MATRIX_LAYOUT_COLS: ok = read_attr(l->cols, buf, size); break;
    case CUBLASLT_MATRIX_LAYOUT_LD: ok = read_attr(l->ld, buf, size); break;
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: ok = read_attr(l->batch, buf, size); break;
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET: ok = read_attr(l->stride, buf, size); break;
    default: return CUBLAS_STATUS_INVALID_VALUE;
  }
  return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  if (!pref) return CUBLAS_STATUS_INVALID_VALUE;
  *pref = new cublasLtMatmulPreferenceOpaque_st;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
  delete pref;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void* buf,
                                                    size_t size) {
  if (!pref) return CUBLAS_STATUS_INVALID_VALUE;
  bool ok = false;
  switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: ok = read_attr(pref->max_workspace, buf, size); break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: ok = read_attr(pref->align[0], buf, size); break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: ok = read_attr(pref->align[1], buf, size); break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: ok = read_attr(pref->align[2], buf, size); break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: ok = read_attr(pref->align[3], buf, size); break;
    case CUBLASLT_MATMUL_PREF_SEARCH_MODE:
    case CUBLASLT_MATMUL_PREF_MAX_WAVES_COUNT: {
      uint32_t v;
      ok = read_attr(v, buf, size);
      break;
    }
    case CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK: {
      uint32_t v;
      ok = read_attr(v, buf, size);
      break;
    }
    case CUBLASLT_MATMUL_PREF_IMPL_MASK: {
      uint64_t v;
      ok = read_attr(v, buf, size);
      break;
    }
    default: return CUBLAS_STATUS_INVALID_VALUE;
  }
  return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

// One algorithm: K split through the workspace the preference allows, and the operand alignments
// it was chosen for (16 bytes at most; an operand aligned less than its element is refused).
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
                                              cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
                                              cublasLtMatmulPreference_t pref, int requestedAlgoCount,
                                              cublasLtMatmulHeuristicResult_t results[], int* returnAlgoCount) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!desc || !Adesc || !Bdesc || !Cdesc || !Ddesc || !pref || requestedAlgoCount < 1 || !results ||
      !returnAlgoCount)
    return CUBLAS_STATUS_INVALID_VALUE;
  *returnAlgoCount = 0;
  Problem p;
  if (cublasStatus_t st = check_problem(*desc, *Adesc, *Bdesc, *Cdesc, *Ddesc, p); st != CUBLAS_STATUS_SUCCESS)
    return st;
  const size_t sizes[4] = {elem_size(p.ab_type), elem_size(p.ab_type), elem_size(p.cd_type), elem_size(p.cd_type)};
  cublasLtMatmulHeuristicResult_t r{};
  r.algo.data[0] = kAlgoMagic;
  for (int i = 0; i < 4; ++i) {
    if (pref->align[i] < sizes[i]) return CUBLAS_STATUS_NOT_SUPPORTED;  // no algorithm reads such an operand
    r.algo.data[2 + i] = pref->align[i] < 16 ? pref->align[i] : 16;
  }
  const int splits = splits_for(p, pref->max_workspace);
  r.algo.data[1] = uint64_t(splits);
  r.workspaceSize = workspace_for(p, splits);
  r.state = CUBLAS_STATUS_SUCCESS;
  r.wavesCount = 1.0f;
  results[0] = r;
  *returnAlgoCount = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void* alpha, const void* A,
                              cublasLtMatrixLayout_t Adesc, const void* B, cublasLtMatrixLayout_t Bdesc,
                              const void* beta, const void* C, cublasLtMatrixLayout_t Cdesc, void* D,
                              cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t* algo, void* workspace,
                              size_t workspaceSizeInBytes, cudaStream_t stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!desc || !Adesc || !Bdesc || !Cdesc || !Ddesc || !alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
  MatmulCall call;
  if (cublasStatus_t st = check_problem(*desc, *Adesc, *Bdesc, *Cdesc, *Ddesc, call.p); st != CUBLAS_STATUS_SUCCESS)
    return st;
  const Problem& p = call.p;
  if (p.m == 0 || p.n == 0) return CUBLAS_STATUS_SUCCESS;
  if (!A || !B || !D || (p.bias && !desc->bias)) return CUBLAS_STATUS_INVALID_VALUE;
  // In place (C == D) needs C's layout to be D's.
  if (C == D && std::memcmp(Cdesc, Ddesc, sizeof(*Cdesc)) != 0) return CUBLAS_STATUS_INVALID_VALUE;
  int splits = 0;
  if (algo) {
    if (algo->data[0] != kAlgoMagic) return CUBLAS_STATUS_INVALID_VALUE;
    splits = int(algo->data[1]);
    // The alignments the algorithm was chosen for must hold.
    const void* ptrs[4] = {A, B, C ? C : D, D};
    for (int i = 0; i < 4; ++i)
      if (alignment_of(ptrs[i]) < algo->data[2 + i]) return CUBLAS_STATUS_NOT_SUPPORTED;
  } else {
    splits = splits_for(p, workspaceSizeInBytes);  // cuBLASLt picks one itself
  }
  const size_t need = workspace_for(p, splits);
  if (need > workspaceSizeInBytes) return CUBLAS_STATUS_NOT_SUPPORTED;  // this algorithm needs more
  if (need > 0 && !workspace) return CUBLAS_STATUS_INVALID_VALUE;
  call.A = *Adesc, call.B = *Bdesc, call.C = *Cdesc, call.D = *Ddesc;
  call.a = A, call.b = B, call.c = C, call.d = D;
  call.bias = p.bias ? desc->bias : nullptr;
  call.bias_stride = desc->bias_batch_stride;
  call.ws = need ? static_cast<float*>(workspace) : nullptr;
  call.splits = need ? splits : 0;
  if (desc->pointer_mode == CUBLASLT_POINTER_MODE_DEVICE) {
    call.alpha_dev = static_cast<const float*>(alpha), call.beta_dev = static_cast<const float*>(beta);
    call.alpha = call.beta = 0.0f;
  } else {
    // Host scalars are read at the call (the caller's locals are gone when the work runs).
    std::memcpy(&call.alpha, alpha, sizeof(float));
    std::memcpy(&call.beta, beta, sizeof(float));
    if (call.beta != 0.0f && !C) return CUBLAS_STATUS_INVALID_VALUE;
  }
  const cudaError_t e =
      strata_emu::rt::stream_op(stream, strata_emu::rt::NodeKind::kernel, "cublasLtMatmul", [call] { call.run(); });
  if (e != cudaSuccess) {
    strata_emu::set_last_error(e);
    return CUBLAS_STATUS_EXECUTION_FAILED;
  }
  return CUBLAS_STATUS_SUCCESS;
}
