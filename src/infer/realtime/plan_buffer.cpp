#include "infer/realtime/plan_buffer.h"

#include "core/error.h"

namespace strata::rt {

PlanBuffer::PlanBuffer(PlanShape shape) : shape_(shape) {
  STRATA_CHECK(shape.latent_dim >= 0 && shape.chunk_len >= 0 && shape.action_dim >= 0,
               "plan shape: negative size (latent {}, chunk {} x {})", shape.latent_dim, shape.chunk_len,
               shape.action_dim);
  STRATA_CHECK(shape.floats() > 0, "plan shape: empty plan (no latent and no action chunk)");
  // Each record's floats start a cache line apart (16 floats), so writer and reader never share one.
  const int64_t stride = (shape.floats() + 15) / 16 * 16;
  storage_.assign(size_t(3 * stride), 0.0f);
  for (int i = 0; i < 3; ++i) {
    PlanRecord& r = slots_[i].rec;
    r.shape = shape;
    r.latent = storage_.data() + i * stride;
    r.chunk = r.latent + shape.latent_dim;
  }
}

}  // namespace strata::rt
