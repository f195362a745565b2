#pragma once
// CUDA twin of kernels/cpu/attention.h: same names, signatures and semantics; every pointer is a
// device pointer and the work is queued on the current stream (kernels/cuda/runtime.h).
#include <cstdint>

namespace strata::cuda {

// Causal flash attention (FlashAttention-2 forward): GQA/MQA (query head h reads kv head
// h / (Hq / Hkv)), queries are the last Tq of Tk positions, score = scale * q.k.
//   q[B, Tq, Hq, hd_qk] (contiguous);
//   k element (b, t, h, c) at b*k_bstride + t*k_tstride + h*hd_qk + c,
//   v element (b, t, h, c) at b*v_bstride + t*v_tstride + h*hd_v + c
//   -> out[B, Tq, Hq, hd_v]; lse[B, Hq, Tq] (may be null).
// window > 0: sliding window, the query at position p sees keys max(0, p - window + 1)..p.
// Any head dims. Few query rows per kv head (decode) split the keys over blocks (flash-decoding)
// and combine the partial results in a second kernel.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B,
                       int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hkv, int64_t hd_qk, int64_t hd_v, float scale,
                       int64_t k_bstride, int64_t k_tstride, int64_t v_bstride, int64_t v_tstride,
                       int64_t window = 0);
// The same forward on tensor cores: q, k, v in bf16 (raw bits, as DType::bf16 stores them), fp32
// scores / softmax / accumulation, fp32 out and lse. hd_qk == hd_v == hd of 64 or 128; strides
// multiples of 8 elements and 16-byte aligned pointers (16-byte loads). No key splitting: meant for
// training and prefill shapes (decode takes the fp32 path). Full causal only (no sliding window).
void attention_forward_bf16(float* out, float* lse, const uint16_t* q, const uint16_t* k, const uint16_t* v,
                            int64_t B, int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hkv, int64_t hd, float scale,
                            int64_t k_bstride, int64_t k_tstride, int64_t v_bstride, int64_t v_tstride);
// Backward for Tq == Tk == T, contiguous q, k [B, T, H*, hd_qk], v [B, T, Hkv, hd_v], out/dout
// [B, T, Hq, hd_v]; recomputes probabilities from lse. dq, dk, dv assigned. Deterministic (no
// atomics): one kernel per key tile for dk/dv, one per query tile for dq. Head dims up to 256.
// window: as the forward's.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, int64_t B, int64_t T, int64_t Hq,
                        int64_t Hkv, int64_t hd_qk, int64_t hd_v, float scale, int64_t window = 0);
// One decode step over a paged kv cache (see cpu::attention_decode_paged for the layout, window and
// split_keys).
// block_table and seq_lens are device arrays; table entries are clamped to [0, num_blocks) and
// seq_lens to [0, max_blocks * block_size] on the device, so bad entries cannot read out of bounds.
void attention_decode_paged(float* out, float* lse, const float* q, const float* k_cache, const float* v_cache,
                            const int32_t* block_table, const int32_t* seq_lens, int64_t B, int64_t Hq, int64_t Hkv,
                            int64_t hd_qk, int64_t hd_v, float scale, int64_t k_tstride, int64_t v_tstride,
                            int64_t block_size, int64_t max_blocks, int64_t num_blocks, int64_t window = 0,
                            bool split_keys = true);

}  // namespace strata::cuda
