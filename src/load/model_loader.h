#pragma once
// Model loading: a path (a strata checkpoint, a run directory, or a Hugging Face model directory)
// to a runnable LoadedModel. Its own layer, above train/ (checkpoints) and interop/ (Hugging Face
// import), so that neither of those needs the other's reader and infer/ needs neither.
#include <string>

#include "infer/loaded_model.h"

namespace strata {

// A checkpoint argument as the CLI takes it: a file (returned as is), a Hugging Face model directory
// (returned as is; imported on load), or a run directory (its newest checkpoint that verifies).
// Newer checkpoints of a run directory that fail verification are skipped; *skipped (cleared first)
// then names each with its reason, so that the caller can say so instead of silently using an
// older one. Throws InputError when nothing usable is found.
std::string resolve_checkpoint(const std::string& path, std::string* skipped = nullptr);

// Loads a strata checkpoint (verifying it), or a Hugging Face model directory (imported on the fly,
// see interop/hf_import.h), and builds its model.
LoadedModel load_model(const std::string& path);

}  // namespace strata
