#pragma once
// Kernel launches and shared memory on the CPU emulator (what kernels/cuda/launch.cuh's macros
// expand to in the STRATA_CUDA_EMULATOR build).
//
// Launch(kernel, grid, block, smem, stream)(args...) checks the configuration as the GPU does (a bad
// one sets the launch error and runs nothing), then queues on `stream` a closure holding copies of
// the arguments converted to the kernel's parameter types. Running it (on whatever host thread the
// runtime runs it) executes the grid: blocks resident a few at a time, their threads as fibers.
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#include "strata_emulator/device.h"
#include "strata_emulator/interface.h"

namespace strata_emu {

struct LaunchConfig {
  const char* name;
  const void* kernel;
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
};
// Validates a launch: false (and the last error set) if the GPU would refuse it.
bool validate_launch(const LaunchConfig& cfg);
// Runs the grid on the calling host thread; thread_main(ctx) is one CUDA thread's body.
void run_grid(const LaunchConfig& cfg, void (*thread_main)(void*), void* ctx);

// Per-block shared memory: a static declaration's storage (allocated on its first touch in the block,
// keyed by the declaration's tag) and the launch's dynamic buffer.
void* shared_static_raw(const void* tag, size_t bytes, size_t align);
void* shared_dynamic_raw();
template <class A>
using ref_t = A&;  // STRATA_SHARED's reference type, for arrays and scalars alike
template <class A>
A& shared_static(const void* tag) {
  return *static_cast<A*>(shared_static_raw(tag, sizeof(A), alignof(A) < 16 ? 16 : alignof(A)));
}
template <class T>
T* shared_dynamic() {
  return static_cast<T*>(shared_dynamic_raw());
}

template <class... P>
class Launcher {
 public:
  Launcher(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream)
      : kernel_(kernel), cfg_{name, reinterpret_cast<const void*>(kernel), grid, block, smem, stream} {}

  template <class... A>
  void operator()(A&&... a) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    if (!validate_launch(cfg_)) return;
    using Args = std::tuple<std::decay_t<P>...>;
    // Converted to the parameter types now, as the GPU's launch copies them.
    auto args = std::make_shared<const Args>(static_cast<std::decay_t<P>>(std::forward<A>(a))...);
    enqueue(cfg_.stream, cfg_.name, [cfg = cfg_, kernel = kernel_, args] {
      struct Ctx {
        void (*kernel)(P...);
        const Args* args;
      } ctx{kernel, args.get()};
      run_grid(
          cfg, [](void* c) { auto* x = static_cast<Ctx*>(c); std::apply(x->kernel, *x->args); }, &ctx);
    });
  }

 private:
  void (*kernel_)(P...);
  LaunchConfig cfg_;
};

template <class... P>
Launcher<P...> Launch(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem = 0,
                      cudaStream_t stream = nullptr) {
  return Launcher<P...>(name, kernel, grid, block, smem, stream);
}
template <class... P>
Launcher<P...> Launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem = 0, cudaStream_t stream = nullptr) {
  return Launcher<P...>("kernel", kernel, grid, block, smem, stream);
}

}  // namespace strata_emu
