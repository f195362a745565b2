#include "models/action_loss.h"

#include <cmath>

#include "core/error.h"

namespace strata {

ActionLoss action_loss_from(const std::string& name) {
  if (name == "l1") return ActionLoss::l1;
  if (name == "mse") return ActionLoss::mse;
  throw InputError(fmt::format("action loss '{}': expected l1 or mse", name));
}

float action_loss(ActionLoss kind, const float* pred, const float* target, const float* mask, int64_t rows, int64_t A,
                  float* dpred, float scale) {
  double kept = 0;
  for (int64_t r = 0; r < rows; ++r) kept += mask[r] != 0.0f;
  const double n = kept * double(A);
  const float g = n > 0 ? float(scale / n) : 0.0f;
  double sum = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const bool on = mask[r] != 0.0f;
    for (int64_t a = 0; a < A; ++a) {
      const int64_t i = r * A + a;
      const float d = pred[i] - target[i];
      if (!on) {
        if (dpred) dpred[i] = 0.0f;
        continue;
      }
      if (kind == ActionLoss::l1) {
        sum += std::fabs(d);
        if (dpred) dpred[i] = d > 0 ? g : d < 0 ? -g : 0.0f;
      } else {
        sum += double(d) * d;
        if (dpred) dpred[i] = 2.0f * d * g;
      }
    }
  }
  return n > 0 ? float(sum / n) : 0.0f;
}

}  // namespace strata
