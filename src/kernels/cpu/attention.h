#pragma once
#include <cstdint>

namespace strata::cpu {

// Causal scaled-dot-product attention, flash style: tiled over keys with an online softmax, never
// a T x T matrix. GQA/MQA: query head h reads kv head h / (Hq / Hkv). Queries and keys have hd_qk
// channels, values hd_v (they differ for MLA); score = scale * q.k (scale = 1/sqrt(hd_qk) for
// standard attention; MLA passes its own).
// Queries are the last Tq of Tk positions: query i sits at position Tk - Tq + i and sees keys
// 0..Tk-Tq+i. Tq == Tk is training/prefill; Tq == 1 with Tk = cache length is a decode step.
//   q[B, Tq, Hq, hd_qk] (contiguous);
//   k element (b, t, h, c) at b*k_bstride + t*k_tstride + h*hd_qk + c  (c < hd_qk),
//   v element (b, t, h, c) at b*v_bstride + t*v_tstride + h*hd_v + c   (c < hd_v)
//   (contiguous [B, Tk, Hkv, hd]: tstride = Hkv*hd, bstride = Tk*tstride; a cache with room for
//   Tmax: bstride = Tmax*tstride; MLA's latent cache: Hkv = 1, k and v the same rows of
//   kv_lora_rank + rope channels, v = their first hd_v = kv_lora_rank channels)
//   -> out[B, Tq, Hq, hd_v]; lse[B, Hq, Tq] = log-sum-exp of the scaled scores (may be null).
// window > 0: sliding-window attention, the query at position p sees only keys
// max(0, p - window + 1)..p (the last `window` positions, itself included); 0 = full causal.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B,
                       int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hkv, int64_t hd_qk, int64_t hd_v, float scale,
                       int64_t k_bstride, int64_t k_tstride, int64_t v_bstride, int64_t v_tstride,
                       int64_t window = 0);
// attention_forward with q, k, v in bf16 (raw bits), fp32 out and lse: the reference of the CUDA
// twin's tensor-core kernel (the inputs are widened to fp32 and attention_forward runs; the CUDA
// kernel also rounds the probabilities to bf16 for its P V product). hd_qk == hd_v == hd.
// Full causal only (no sliding window: no layer calls it with one).
void attention_forward_bf16(float* out, float* lse, const uint16_t* q, const uint16_t* k, const uint16_t* v,
                            int64_t B, int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hkv, int64_t hd, float scale,
                            int64_t k_bstride, int64_t k_tstride, int64_t v_bstride, int64_t v_tstride);
// Backward for Tq == Tk == T, contiguous q, k [B, T, H*, hd_qk], v [B, T, Hkv, hd_v], out/dout
// [B, T, Hq, hd_v]; recomputes probabilities from lse (FlashAttention-2 style). dq, dk, dv assigned.
// window: as the forward's (the same value it ran with).
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, int64_t B, int64_t T, int64_t Hq,
                        int64_t Hkv, int64_t hd_qk, int64_t hd_v, float scale, int64_t window = 0);

// One decode step (a query per sequence) over a paged kv cache, vLLM style: the cache is a pool of
// num_blocks blocks of block_size token slots; sequence b's token t sits in block
// block_table[b * max_blocks + t / block_size] at slot t % block_size, and the sequence has
// seq_lens[b] tokens (the new one included, so its query sits at position seq_lens[b] - 1 and sees
// all of them; seq_lens[b] <= max_blocks * block_size; 0 gives out = 0, lse = -inf).
//   q[B, Hq, hd_qk]; k element (slot s, h, c) at k_cache[s*k_tstride + h*hd_qk + c] where
//   s = block * block_size + t % block_size, v likewise with v_tstride and hd_v (contiguous
//   [num_blocks, block_size, Hkv, hd]: tstride = Hkv*hd)
//   -> out[B, Hq, hd_v]; lse[B, Hq] (may be null). Same math as attention_forward with Tq = 1.
// window > 0: sliding window, the query sees only the last min(window, seq_lens[b]) tokens (as
// attention_forward's window); 0 = all of them.
// split_keys: the CUDA twin may split a long key range over several blocks when B * Hkv is too
// small to fill the GPU (flash-decoding), which makes a query's summation order depend on B; false
// keeps one pass per query, so a query's result is bitwise independent of the other queries (the
// serving engine's batch invariance). This kernel never splits: it ignores the flag.
void attention_decode_paged(float* out, float* lse, const float* q, const float* k_cache, const float* v_cache,
                            const int32_t* block_table, const int32_t* seq_lens, int64_t B, int64_t Hq, int64_t Hkv,
                            int64_t hd_qk, int64_t hd_v, float scale, int64_t k_tstride, int64_t v_tstride,
                            int64_t block_size, int64_t max_blocks, int64_t num_blocks, int64_t window = 0,
                            bool split_keys = true);

// The scores step of attention_decode_paged, exposed for its test: s[j] = scale * q . k_j for the kn
// keys at k + slots[j] * tstride (hd values each), by the vector path of this build or (portable)
// by the scalar one, which must agree bit for bit.
void paged_scores(float* s, const float* q, const float* k, const int64_t* slots, int64_t kn, int64_t tstride,
                  int64_t hd, float scale, bool portable);
// Its softmax weights: s[j] = exp(s[j] - mx) (every s[j] <= mx) by its own exp, on either path.
void paged_exp(float* s, int64_t n, float mx, bool portable);
// Its value step: o[c] += sum_j p[j] * v_j[c], in key order, on either path (the same bits).
void paged_pv(float* o, const float* p, const float* v, const int64_t* slots, int64_t kn, int64_t tstride, int64_t hd,
              bool portable);

}  // namespace strata::cpu
