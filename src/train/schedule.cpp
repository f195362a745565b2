#include "train/schedule.h"

#include <algorithm>
#include <cmath>

namespace strata {

float learning_rate(const OptimConfig& o, int64_t step, int64_t total) {
  if (o.warmup > 0 && step < o.warmup) return o.lr * float(step + 1) / float(o.warmup);
  if (o.schedule == "constant") return o.lr;
  double span = double(std::max<int64_t>(1, total - o.warmup));
  double progress = std::clamp(double(step - o.warmup) / span, 0.0, 1.0);
  double min_lr = double(o.lr) * o.min_lr_ratio;
  return float(min_lr + 0.5 * (o.lr - min_lr) * (1.0 + std::cos(M_PI * progress)));
}

}  // namespace strata
