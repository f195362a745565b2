#pragma once
// The version and git commit this build was configured from (strata --version, checkpoints' attributes).
namespace strata {

const char* strata_version();
const char* strata_git_commit();

}  // namespace strata
