#pragma once
// Durability for atomic writes (checkpoints, safetensors): a file is written to "<path>.tmp", fsynced,
// renamed over <path>, and the directory is fsynced so that the rename itself survives a crash.
#include <functional>
#include <string>

namespace strata {

// fsync a file, or a directory when `directory` is set. Throws strata::Error naming the path. File
// systems that refuse fsync on directories (EINVAL) are tolerated: the rename is atomic all the same.
void fsync_path(const std::string& path, bool directory);

// Replaces <path> through "<path>.tmp": write(tmp) creates and fills the temporary file, which is
// then fsynced, renamed over <path>, and the directory fsynced (data on disk before the rename makes
// it the file, and the rename on disk before success is reported), so a crash leaves either the old
// file or the complete new one. On any error the temporary file is removed and the error rethrown;
// a failed rename is reported as "<context>: rename from '<tmp>' failed: <reason>".
void replace_file_atomically(const std::string& path, const std::string& context,
                             const std::function<void(const std::string& tmp)>& write);

}  // namespace strata
