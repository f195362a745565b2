#pragma once
#include <cstdint>

namespace strata::cpu {

// Mixture-of-experts routing. logits[N, E] -> probs[N, E] = softmax(logits);
// top-k experts per token idx[N, k] (descending prob; ties -> lower index), gate[N, k] = their
// probs, or when renorm, the probs divided by their sum over the k (Mixtral).
void moe_route_forward(int32_t* idx, float* gate, float* probs, const float* logits, int64_t N, int64_t E,
                       int64_t k, bool renorm);
// dlogits[N, E] assigned from dgate[N, k] through the gate computation (and the softmax).
void moe_route_backward(float* dlogits, const float* dgate, const float* probs, const int32_t* idx,
                        const float* gate, int64_t N, int64_t E, int64_t k, bool renorm);

// Switch-Transformer load-balancing loss: E * sum_e f_e * P_e with f_e = (assignments to e)/(N k)
// (no gradient through f), P_e = mean_n probs[n, e]. Returns the loss.
float moe_aux_loss_forward(const float* probs, const int32_t* idx, int64_t N, int64_t E, int64_t k);
// dlogits[N, E] += coef * d(loss)/d(logits) (through the softmax).
void moe_aux_loss_backward(float* dlogits, const float* probs, const int32_t* idx, float coef, int64_t N,
                           int64_t E, int64_t k);

// Group the N*k assignments by expert (stable: token order kept within an expert).
// offsets[E+1]: expert e owns rows offsets[e] .. offsets[e+1]-1 of the permuted buffer;
// row_token[N*k]: source token of each permuted row; row_of[N*k]: for assignment (n, j) = n*k+j,
// the permuted row it went to.
void moe_permute_indices(int32_t* offsets, int32_t* row_token, int32_t* row_of, const int32_t* idx, int64_t N,
                         int64_t E, int64_t k);
// xp[r, :] = x[row_token[r], :]   x[N, D] -> xp[N*k, D]
void moe_gather_rows(float* xp, const float* x, const int32_t* row_token, int64_t rows, int64_t D);
// y[n, :] = sum_j gate[n, j] * yp[row_of[n*k+j], :]   yp[N*k, D] -> y[N, D] (assigned)
void moe_combine_forward(float* y, const float* yp, const float* gate, const int32_t* row_of, int64_t N, int64_t k,
                         int64_t D);
// dyp[row_of[n*k+j], :] = gate[n,j] * dy[n, :] (assigned); dgate[n, j] = <dy[n], yp[row_of[n*k+j]]> (assigned)
void moe_combine_backward(float* dyp, float* dgate, const float* dy, const float* yp, const float* gate,
                          const int32_t* row_of, int64_t N, int64_t k, int64_t D);
// dx[n, :] += sum over rows r with row_token[r] == n of dxp[r, :]   (accumulated)
void moe_scatter_add_rows(float* dx, const float* dxp, const int32_t* row_token, int64_t rows, int64_t D);

// Grouped linear over experts: the expert GEMMs of an MoE layer as one call (the CUDA twin runs one
// grouped kernel over every expert's rows instead of a loop of small GEMMs). Rows
// offsets[e] .. offsets[e+1]-1 of the permuted buffer belong to expert e, whose weight W_e [OC, IC]
// (HF layout) is at w + e * w_stride; rows = offsets[E]. offsets live with the data (host memory
// here, device memory for the CUDA twin).
// inp[rows, IC] -> out[rows, OC] = inp_e @ W_e^T per expert (assigned).
void moe_grouped_linear_forward(float* out, const float* inp, const float* w, int64_t w_stride,
                                const int32_t* offsets, int64_t rows, int64_t E, int64_t IC, int64_t OC);
// dinp[rows, IC] = dout_e @ W_e (assigned, or accumulated when accumulate_dinp; skipped if null);
// dW_e [OC, IC] at dw + e * w_stride += dout_e^T @ inp_e (skipped if dw is null; idle experts get nothing).
void moe_grouped_linear_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                                 int64_t w_stride, const int32_t* offsets, int64_t rows, int64_t E, int64_t IC,
                                 int64_t OC, bool accumulate_dinp);

}  // namespace strata::cpu
