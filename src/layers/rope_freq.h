#pragma once
// RoPE inverse frequencies inv_freq[rot/2] (pair i turns by pos * inv_freq[i]) as transformers 5
// computes them in modeling_rope_utils.py, for the rope kernels (kernels/cpu/rope.h). Types that
// rescale positions per call (dynamic) or the attention scores too (yarn, longrope) are refused.
#include <cstdint>
#include <vector>

#include "layers/block_config.h"

namespace strata {

// The rope_type values strata computes (Hugging Face rope_parameters.rope_type names).
inline constexpr const char* kRopeTypes[] = {"default", "linear", "llama3"};

// inv_freq[i] = 1 / theta^(2i/rot), i < rot/2, rounded as torch's fp32 arithmetic rounds it.
std::vector<float> rope_default_inv_freq(int64_t rot, float theta);

// The table of attention.rope_type for the first `rot` channels of a head (rot even):
//   default: as above;  linear: default / rope_factor;
//   llama3:  default, with wavelengths 2 pi / f above original_max / low_freq_factor divided by
//            rope_factor, below original_max / high_freq_factor kept, and smoothly blended between.
// Throws InputError for an unknown or unsupported type (naming it and the supported ones) and for
// parameters that make the table meaningless.
std::vector<float> rope_inv_freq(const AttentionConfig& a, int64_t rot);

}  // namespace strata
