// Linear layers at the Ctx's precision (see linear.h).
#include "layers/linear.h"

#include "core/device.h"
#include "core/error.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/gemm_rows.h"
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

// One product over all N rows at ctx.precision (the whole of linear_forward without row tiles).
void linear_untiled(const Ctx& ctx, float* out, const float* inp, const float* weight, const float* bias, int64_t N,
                    int64_t IC, int64_t OC) {
  QuantWeight qw;
  bool int8_acts = false;
  if (ctx.quant && ctx.quant->find(weight, IC, OC, qw, &int8_acts)) {
    if (int8_acts) STRATA_OP(ctx.device, quant_linear_forward_act8, out, inp, qw, bias, N);
    else STRATA_OP(ctx.device, quant_linear_forward, out, inp, qw, bias, N);
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

// Runs product(out, out_ld, in, in_ld, rows) over in[N, in_cols] -> out[N, out_cols] (row strides
// in_ld, out_ld) on exactly ctx.row_tile rows at a time: whole tiles in place, the last partial
// tile copied into zero-padded arena scratch and its rows copied back. A row's result then comes
// from a product of one fixed shape whatever N is.
template <class F>
void in_row_tiles(const Ctx& ctx, int64_t N, const float* in, int64_t in_ld, int64_t in_cols, float* out,
                  int64_t out_ld, int64_t out_cols, F&& product) {
  const int64_t tile = ctx.row_tile;
  STRATA_CHECK(ctx.arena, "row tiles need ctx.arena (scratch for the padded last tile)");
  int64_t r0 = 0;
  for (; r0 + tile <= N; r0 += tile) product(out + r0 * out_ld, out_ld, in + r0 * in_ld, in_ld, tile);
  const int64_t rest = N - r0;
  if (rest == 0) return;
  float* a = ctx.arena->alloc(size_t(tile * in_cols));
  float* c = ctx.arena->alloc(size_t(tile * out_cols));
  device_zero(ctx.device, a + rest * in_cols, sizeof(float) * size_t((tile - rest) * in_cols));
  STRATA_OP(ctx.device, copy_strided, a, in_cols, in + r0 * in_ld, in_ld, rest, in_cols);
  product(c, out_cols, a, in_cols, tile);
  STRATA_OP(ctx.device, copy_strided, out + r0 * out_ld, out_ld, c, out_cols, rest, out_cols);
}

}  // namespace

void linear_forward(const Ctx& ctx, float* out, const float* inp, const float* weight, const float* bias, int64_t N,
                    int64_t IC, int64_t OC) {
  if (ctx.row_tile <= 0 || N == 0) return linear_untiled(ctx, out, inp, weight, bias, N, IC, OC);
  if (ctx.device == Device::cpu) {
    // On the CPU, kernels whose rows are invariant by construction: one product over all N rows, no
    // tiles and no padding (a lone decode row is a GEMV, a batch reads each weight once).
    QuantWeight qw;
    bool int8_acts = false;
    if (ctx.quant && ctx.quant->find(weight, IC, OC, qw, &int8_acts)) {
      if (int8_acts) cpu::quant_linear_forward_act8(out, inp, qw, bias, N);  // rows invariant at every N
      else cpu::quant_linear_forward(out, inp, qw, bias, N, /*row_invariant=*/true);
      return;
    }
    if (ctx.precision == Precision::fp32) {
      cpu::linear_rows_invariant(out, OC, inp, IC, weight, IC, bias, N, IC, OC);
      return;
    }
  }
  in_row_tiles(ctx, N, inp, IC, IC, out, OC, OC,
               [&](float* o, int64_t, const float* i, int64_t, int64_t rows) {  // strides: OC, IC
                 linear_untiled(ctx, o, i, weight, bias, rows, IC, OC);
               });
}

void rows_gemm(const Ctx& ctx, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
               const float* B, int64_t ldb, float* C, int64_t ldc) {
  if (ctx.row_tile <= 0 || M == 0) {
    STRATA_OP(ctx.device, gemm, false, trans_b, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
    return;
  }
  if (ctx.device == Device::cpu && trans_b) {  // B[N, K]: the row-invariant kernel, as linear_forward
    cpu::linear_rows_invariant(C, ldc, A, lda, B, ldb, nullptr, M, K, N);
    return;
  }
  in_row_tiles(ctx, M, A, lda, K, C, ldc, N, [&](float* c, int64_t ldc_, const float* a, int64_t lda_, int64_t rows) {
    STRATA_OP(ctx.device, gemm, false, trans_b, rows, N, K, 1.0f, a, lda_, B, ldb, 0.0f, c, ldc_);
  });
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
