#pragma once
// CUDA twin of kernels/cpu/loss.h: same names, signatures and semantics; every pointer is a
// device pointer and the work is queued on the current stream (kernels/cuda/runtime.h).
#include <cstdint>

namespace strata::cuda {

// Fused softmax + cross-entropy over the vocabulary. logits[N, V], targets[N] (target < 0: ignored)
// -> losses[N] (0 for ignored rows); returns the mean loss over non-ignored rows.
// dlogits[N, V] (may equal logits, computed in place) = (softmax - onehot) * dloss_scale for
// counted rows, 0 for ignored rows; dloss_scale is usually 1 / (number of counted rows).
float softmax_xent_forward_backward(float* losses, float* dlogits, const float* logits, const int32_t* targets,
                                    int64_t N, int64_t V, float dloss_scale);
// Forward only (evaluation): same losses and mean.
float softmax_xent_forward(float* losses, const float* logits, const int32_t* targets, int64_t N, int64_t V);

}  // namespace strata::cuda
