#pragma once
// One dispatch point between the cpu/ and cuda/ twins. Every op has the same name and signature
// in strata::cpu and strata::cuda; a layer writes STRATA_OP(device, rmsnorm_forward, args...) and
// the branch is taken once per op call, never per element.
#include "core/dtype.h"
#include "core/error.h"
#ifdef STRATA_WITH_CUDA
#include "kernels/cuda/ops.h"
#endif

#ifdef STRATA_WITH_CUDA
#define STRATA_OP(device, op, ...)                         \
  do {                                                     \
    if ((device) == ::strata::Device::cuda)                \
      ::strata::cuda::op(__VA_ARGS__);                     \
    else                                                   \
      ::strata::cpu::op(__VA_ARGS__);                      \
  } while (0)
// The same for ops that return a value (a loss, a norm): an expression.
#define STRATA_OP_VALUE(device, op, ...) \
  ((device) == ::strata::Device::cuda ? ::strata::cuda::op(__VA_ARGS__) : ::strata::cpu::op(__VA_ARGS__))
#else
#define STRATA_OP(device, op, ...)                                                         \
  do {                                                                                     \
    STRATA_CHECK((device) == ::strata::Device::cpu, "{}: this binary was built without CUDA", #op); \
    ::strata::cpu::op(__VA_ARGS__);                                                        \
  } while (0)
#define STRATA_OP_VALUE(device, op, ...) \
  (::strata::detail::require_cpu_op((device), #op), ::strata::cpu::op(__VA_ARGS__))
namespace strata::detail {
inline void require_cpu_op(Device device, const char* op) {
  STRATA_CHECK(device == Device::cpu, "{}: this binary was built without CUDA", op);
}
}  // namespace strata::detail
#endif
