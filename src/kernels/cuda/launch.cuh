#pragma once
// Kernel launches and shared-memory declarations written once for two compilers: nvcc, and a host
// C++ compiler running the same source on the CPU emulator of the CUDA execution model
// (tests/emulator/, the STRATA_CUDA_EMULATOR build). The emulator cannot parse `<<<...>>>`, and a
// plain `__shared__` variable would be one object for every block it runs at once, so the kernels
// say both through these macros:
//   STRATA_LAUNCH((grid, block, smem, stream), kernel<T>)(args...)   for STRATA_LAUNCH((grid, block, smem, stream), kernel<T>)(args...)
//   STRATA_SHARED(float, red, [8][33]);                               for STRATA_SHARED(float, red, [8][33]);
//   STRATA_DYNAMIC_SMEM(float, buf);                                  for extern __shared__ __align__(16) float buf[];
#define STRATA_UNPAREN(...) __VA_ARGS__
#ifdef STRATA_CUDA_EMULATOR
#include <strata_emulator/launch.h>
#define STRATA_LAUNCH(cfg, ...) ::strata_emu::Launch(#__VA_ARGS__, __VA_ARGS__, STRATA_UNPAREN cfg)
#define STRATA_SHARED(T, name, dims)                \
  static const char name##_strata_shared_tag = 0; \
  ::strata_emu::ref_t<T dims> name = ::strata_emu::shared_static<T dims>(&name##_strata_shared_tag)
#define STRATA_DYNAMIC_SMEM(T, name) T* name = ::strata_emu::shared_dynamic<T>()
#else
#define STRATA_LAUNCH(cfg, ...) __VA_ARGS__<<<STRATA_UNPAREN cfg>>>
#define STRATA_SHARED(T, name, dims) __shared__ T name dims
#ifndef STRATA_DYNAMIC_SMEM
#define STRATA_DYNAMIC_SMEM(T, name) extern __shared__ __align__(16) T name[]
#endif
#endif
