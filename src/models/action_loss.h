#pragma once
// The action heads' loss: L1 or MSE between predicted and demonstrated actions, over the rows a
// mask keeps (padding past an episode's end has mask 0, as ACT's action chunks do).
#include <cstdint>
#include <string>

namespace strata {

enum class ActionLoss { l1, mse };
ActionLoss action_loss_from(const std::string& name);  // "l1" | "mse"

// pred, target [rows, A]; mask [rows] (0/1). Returns the mean over kept values (0 when none), and
// writes dpred[rows, A] = scale * d(mean)/d(pred) (assigned; L1's subgradient is 0 at equality).
float action_loss(ActionLoss kind, const float* pred, const float* target, const float* mask, int64_t rows, int64_t A,
                  float* dpred, float scale = 1.0f);

}  // namespace strata
