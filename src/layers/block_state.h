#pragma once
// The bookkeeping every block kind does between its calls, written once: what a training forward
// saves for its backward (and backward's check that it matches), the input kept for backward, and
// the checked downcast of the engine's BlockCache to the block's own cache type.
#include <cstdint>

#include "core/arena.h"
#include "core/device.h"
#include "core/error.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/dispatch.h"
#include "layers/block.h"

namespace strata {

// What a training forward saved for backward (Acts: the block's activation pointers into the
// arena) and the [B, T] it was for. One forward, one backward: take() consumes it, so a second
// backward, or one after an inference forward, is refused rather than reading stale activations.
template <class Acts>
class SavedActs {
 public:
  // Every forward starts with this: a failed or inference forward leaves nothing to backward.
  void clear() { valid_ = false; }
  // The end of a training forward: `acts` (or, without it, the activations filled in place through
  // acts()) are for [B, T].
  void keep(const Acts& acts, int64_t B, int64_t T) {
    acts_ = acts;
    keep(B, T);
  }
  void keep(int64_t B, int64_t T) { B_ = B, T_ = T, valid_ = true; }
  Acts& acts() { return acts_; }
  // Backward's entry: a training forward of the same [B, T] came first. `kind` names the block.
  const Acts& take(const char* kind, int64_t B, int64_t T) {
    STRATA_CHECK(valid_, "{} backward without a preceding training forward", kind);
    STRATA_CHECK(B == B_ && T == T_, "{} backward for [{}, {}] after a forward of [{}, {}]", kind, B, T, B_, T_);
    valid_ = false;
    return acts_;
  }

 private:
  Acts acts_{};
  int64_t B_ = 0, T_ = 0;
  bool valid_ = false;
};

// The block input as backward will read it: x itself at inference, a copy in ctx.arena when
// training (the caller may overwrite x before backward runs).
inline const float* kept_input(const Ctx& ctx, const float* x, int64_t n) {
  if (!ctx.training) return x;
  float* xs = ctx.arena->alloc(n);
  STRATA_OP(ctx.device, copy_f32, xs, x, n);
  return xs;
}

// The block's own cache type C (which has `batch` and `device()`) from the engine's handle,
// checked: of this block's kind, for batch B, and on the parameters' device.
template <class C>
C* cache_as(BlockCache* cache, const char* kind, int64_t B, Device params_device) {
  auto* c = dynamic_cast<C*>(cache);
  STRATA_CHECK(c, "{} given a cache of another block kind", kind);
  STRATA_CHECK(c->batch == B, "{} cache for batch {} used with batch {}", kind, c->batch, B);
  STRATA_CHECK(c->device() == params_device, "{} cache on {} used with parameters on {}", kind,
               device_name(c->device()), device_name(params_device));
  return c;
}

// forward's cache: nullptr without one (training, plain inference); with one (prefill) it is
// cache_as's and must be empty.
template <class C>
C* prefill_cache(BlockCache* cache, const char* kind, int64_t B, Device params_device) {
  if (!cache) return nullptr;
  C* c = cache_as<C>(cache, kind, B, params_device);
  STRATA_CHECK(c->pos == 0, "{} prefill needs an empty cache (pos {})", kind, c->pos);
  return c;
}

}  // namespace strata
