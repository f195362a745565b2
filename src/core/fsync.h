#pragma once
// Durability for atomic writes (checkpoints, safetensors): a file is written to "<path>.tmp", fsynced,
// renamed over <path>, and the directory is fsynced so that the rename itself survives a crash.
#include <string>

namespace strata {

// fsync a file, or a directory when `directory` is set. Throws strata::Error naming the path. File
// systems that refuse fsync on directories (EINVAL) are tolerated: the rename is atomic all the same.
void fsync_path(const std::string& path, bool directory);

}  // namespace strata
