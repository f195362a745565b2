#pragma once
#include <cstdint>

namespace strata::cpu {

// Causal scaled-dot-product attention, flash style: tiled over keys with an online softmax, never
// a T x T matrix. GQA/MQA: query head h reads kv head h / (Hq / Hkv). scale = 1/sqrt(hd).
// Queries are the last Tq of Tk positions: query i sits at position Tk - Tq + i and sees keys
// 0..Tk-Tq+i. Tq == Tk is training/prefill; Tq == 1 with Tk = cache length is a decode step.
//   q[B, Tq, Hq, hd] (contiguous), k/v: element (b, t, h, c) at b*kv_bstride + (t*Hkv + h)*hd + c
//   (kv_bstride = Tk*Hkv*hd for a contiguous tensor, Tmax*Hkv*hd for a cache with room for Tmax)
//   -> out[B, Tq, Hq, hd]; lse[B, Hq, Tq] = log-sum-exp of the scaled scores (may be null).
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B,
                       int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hkv, int64_t hd, int64_t kv_bstride);
// Backward for Tq == Tk == T, contiguous q/k/v [B, T, H*, hd]; recomputes probabilities from lse
// (FlashAttention-2 style). dq, dk, dv assigned.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, int64_t B, int64_t T, int64_t Hq,
                        int64_t Hkv, int64_t hd);

}  // namespace strata::cpu
