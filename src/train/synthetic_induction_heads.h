#pragma once
// Induction heads as the Mamba paper defines it (Gu & Dao 2023, section 4.1.2; Olsson et al. 2022):
// a sequence of random tokens (never the trigger) in which the trigger token occurs twice: once at a
// random position p <= T - 3, followed by the answer token, and once at the very end, where the
// target is that answer. It is the only tested position (targets are -1 elsewhere). Trained at one
// length, it is evaluated at longer ones to measure extrapolation.
#include "train/synthetic_task.h"

namespace strata {

SyntheticTask induction_heads_task(const InductionHeadsConfig& cfg);

}  // namespace strata
