#pragma once
#include <cstdint>

#include "models/config.h"

namespace strata {

// Learning rate at optimizer step `step` (0-based): linear warmup to optim.lr over optim.warmup
// steps, then cosine decay to lr * min_lr_ratio at `total` steps (or constant).
float learning_rate(const OptimConfig& o, int64_t step, int64_t total);

}  // namespace strata
