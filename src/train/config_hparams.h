#pragma once
// A run's hyperparameters for TensorBoard's HPARAMS tab: chosen config keys with their resolved
// values and schema types (number / string / boolean).
#include <string>
#include <vector>

#include "models/config.h"
#include "train/tensorboard.h"

namespace strata {

// The keys a run reports when nobody chose (a plain `strata train`): what one usually varies.
std::vector<std::string> default_hparam_keys();

// Each key's value in `cfg` (after resolve()). A key outside the schema is an InputError naming it
// and listing the valid keys.
std::vector<HParam> hparams_of(const Config& cfg, const std::vector<std::string>& keys);

}  // namespace strata
