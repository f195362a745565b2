// Linear layers at the Ctx's precision (see linear.h).
#include "layers/linear.h"

#include "core/error.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/quant_gemm.h"
#include "kernels/dispatch.h"
#include "layers/quant_linear.h"

namespace strata {
namespace {

// x[n] rounded to bf16 in arena scratch on ctx.device (recomputed in backward rather than kept from
// the forward: one cast pass costs less than holding a second copy of every saved activation).
const uint16_t* to_bf16(const Ctx& ctx, const float* x, int64_t n) {
  auto* out = reinterpret_cast<uint16_t*>(ctx.arena->alloc(size_t((n + 1) / 2)));
  STRATA_OP(ctx.device, cast_f32_to_bf16, out, x, n);
  return out;
}

void check_bf16_ctx(const Ctx& ctx, const char* what) {
  STRATA_CHECK(ctx.arena, "{} in bf16 needs ctx.arena (scratch for the bf16 operands)", what);
  STRATA_CHECK(ctx.params, "{} in bf16 needs ctx.params (the owner of the bf16 weight shadow)", what);
}

}  // namespace

void linear_forward(const Ctx& ctx, float* out, const float* inp, const float* weight, const float* bias, int64_t N,
                    int64_t IC, int64_t OC) {
  QuantWeight qw;
  if (ctx.quant && ctx.quant->find(weight, IC, OC, qw)) {
    STRATA_OP(ctx.device, quant_linear_forward, out, inp, qw, bias, N);
    return;
  }
  if (ctx.precision == Precision::fp32) {
    STRATA_OP(ctx.device, linear_forward, out, inp, weight, bias, N, IC, OC);
    return;
  }
  check_bf16_ctx(ctx, "linear_forward");
  if (N == 0 || OC == 0) return;
  const uint16_t* w = ctx.params->bf16_of(weight);
  STRATA_OP(ctx.device, gemm_bf16, false, true, N, OC, IC, 1.0f, to_bf16(ctx, inp, N * IC), IC, w, IC, 0.0f, out, OC);
  // The bias row broadcast over the N rows (a source row stride of 0), added in fp32 after the
  // product as the fp32 kernel adds it.
  if (bias) STRATA_OP(ctx.device, add_strided, out, OC, bias, 0, N, OC);
}

void linear_backward(const Ctx& ctx, float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int64_t IC, int64_t OC, bool accumulate_dinp) {
  if (ctx.quant)
    throw InputError("a model loaded with quantised (int8/int4) weights runs inference only: train from the fp32 checkpoint");
  if (ctx.precision == Precision::fp32) {
    STRATA_OP(ctx.device, linear_backward, dinp, dweight, dbias, dout, inp, weight, N, IC, OC, accumulate_dinp);
    return;
  }
  check_bf16_ctx(ctx, "linear_backward");
  const uint16_t* dout_b = (dinp || dweight) ? to_bf16(ctx, dout, N * OC) : nullptr;
  if (dinp)
    STRATA_OP(ctx.device, gemm_bf16, false, false, N, IC, OC, 1.0f, dout_b, OC, ctx.params->bf16_of(weight), IC,
              accumulate_dinp ? 1.0f : 0.0f, dinp, IC);
  if (dweight)
    STRATA_OP(ctx.device, gemm_bf16, true, false, OC, IC, N, 1.0f, dout_b, OC, to_bf16(ctx, inp, N * IC), IC, 1.0f,
              dweight, IC);
  // dbias is a sum of fp32 dout rows: the fp32 kernel with both products skipped.
  if (dbias) STRATA_OP(ctx.device, linear_backward, nullptr, nullptr, dbias, dout, inp, weight, N, IC, OC, false);
}

void enable_bf16_shadow(ParamStore& ps) {
  ps.allocate_bf16_shadow();
  refresh_bf16_shadow(ps);
}

void refresh_bf16_shadow(ParamStore& ps) {
  if (ps.has_bf16_shadow()) STRATA_OP(ps.device(), cast_f32_to_bf16, ps.bf16_shadow(), ps.flat(), ps.numel());
}

}  // namespace strata
