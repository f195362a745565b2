#include "kernels/cpu/isa.h"

namespace strata::cpu {

const char* kernel_isa() {
#if defined(STRATA_CPU_DISPATCH) && defined(__x86_64__) && defined(__GNUC__)
  // The same test the target_clones resolvers make.
  if (__builtin_cpu_supports(STRATA_CPU_CLONE_ISA)) return STRATA_PORTABLE_ARCH "+" STRATA_CPU_CLONE_ISA;
  return STRATA_PORTABLE_ARCH;
#elif defined(STRATA_PORTABLE_ARCH)
  return STRATA_PORTABLE_ARCH;  // portable build without dispatch: the baseline everywhere
#else
  return "native";
#endif
}

}  // namespace strata::cpu
