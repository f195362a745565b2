#pragma once
// Run-time ISA choice for the hot CPU kernels of the portable build (CMake -DSTRATA_NATIVE=OFF).
//
// The portable build compiles everything for the x86-64-v3 baseline (AVX2 + FMA), so that one
// binary runs on every node of a cluster. A kernel marked STRATA_CPU_CLONES is compiled twice from
// the same body by GCC's function multiversioning (target_clones): once for the baseline
// ("default") and once with AVX-512F added (512-bit vectors, mask registers), plus a resolver that
// the dynamic loader runs once (an IFUNC: it reads CPUID through __builtin_cpu_supports), so each
// call is one indirect call, never a per-call feature test. The OpenMP regions inside a marked
// kernel (outlined by GCC as fn._omp_fn.N) are cloned with it. The copies are named fn.avx512f and
// fn.default in the object code; tests/test_portable_isa.cpp relies on that naming.
//
// Why "avx512f" and not "arch=x86-64-v4" (which would add AVX-512 VL/BW/DQ/CD): GCC inlines a
// function into another only when both have the same -march, so an arch= copy calls the small
// inline helpers out of line (seen in perf: exp_nonpos inside the vector loops, the attention
// micro-kernels), which defeats what the copy is for. An ISA-only copy keeps the baseline's arch
// and inlines them as the baseline does.
// The float loops of the kernels need nothing of AVX-512 beyond F. (AVX-512VL, whose 32 registers
// would help the 256-bit attention micro-kernel, is not among the ISAs GCC 12 can dispatch on.)
//
// In the native build (-march=native, the default) the macro is empty: that build already targets
// the build machine's full ISA. oneDNN dispatches its GEMMs at run time by itself in both builds.
//
// Only the loops that dominate a training step are marked (docs/clusters.md, "Which build"); a
// copy costs code size and compile time, and cold code gains nothing from it. A helper that is not
// inlined into a marked kernel runs its baseline code from both copies: mark it too (ssd.cpp).

// The ISA the second copy adds (see above); isa.cpp and tests/test_portable_isa.cpp read it too.
#define STRATA_CPU_CLONE_ISA "avx512f"
#if defined(STRATA_CPU_DISPATCH) && defined(__x86_64__) && defined(__GNUC__)
#define STRATA_CPU_CLONES __attribute__((target_clones(STRATA_CPU_CLONE_ISA, "default")))
#else
#define STRATA_CPU_CLONES
#endif

namespace strata::cpu {

// The instruction set the STRATA_CPU_CLONES kernels run with on this CPU: "native" (the native
// build: whatever -march=native chose), "x86-64-v3+avx512f" (the AVX-512 copies) or the baseline
// the portable build was compiled for ("x86-64-v3"). For `strata --version`, logs and benchmarks.
const char* kernel_isa();

}  // namespace strata::cpu
