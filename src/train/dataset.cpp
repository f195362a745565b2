#include "train/dataset.h"

#include "core/error.h"
#include "train/data.h"
#include "train/synthetic_data.h"

namespace strata {

std::unique_ptr<Dataset> make_dataset(const Config& cfg) {
  if (cfg.data.kind == "text") return std::make_unique<TextData>(cfg.data.path, cfg.data.val_fraction);
  if (is_synthetic_kind(cfg.data.kind)) return std::make_unique<SyntheticData>(synthetic_task(cfg.data));
  throw InputError(fmt::format("data.kind: '{}' is not a dataset kind; one of: text, {}", cfg.data.kind, synthetic_kinds()));
}

}  // namespace strata
