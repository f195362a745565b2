#pragma once
// Selective copying as the Mamba paper defines it (Gu & Dao 2023, section 4.1.1 and Figure 2; the
// safari generator it uses): the first T - tokens positions are the noise token except for `tokens`
// data tokens at random sorted positions (drawn uniformly from the vocab - 2 ids that are neither the
// noise token nor the copy marker vocab - 1); the last `tokens` positions are the copy marker, and
// the target at the i-th marker is the i-th data token. Every other target is -1. Solving it needs
// content-aware (selective) memory: the data tokens' spacing varies from sequence to sequence.
#include "train/synthetic_task.h"

namespace strata {

SyntheticTask selective_copying_task(const SelectiveCopyingConfig& cfg);

}  // namespace strata
