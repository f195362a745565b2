#include "core/version.h"

// Defined by CMake on this file alone, so that a new commit recompiles only it.
#ifndef STRATA_VERSION
#define STRATA_VERSION "dev"
#endif
#ifndef STRATA_GIT_COMMIT
#define STRATA_GIT_COMMIT "unknown"
#endif

namespace strata {

const char* strata_version() { return STRATA_VERSION; }
const char* strata_git_commit() { return STRATA_GIT_COMMIT; }

}  // namespace strata
