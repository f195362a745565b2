#pragma once
// The MPI communicator (train/distributed.h), built only where CMake found MPI (STRATA_HAVE_MPI).
#include <memory>

#include "train/distributed.h"

namespace strata {

// Initialises MPI (once per process; finalised at exit) and returns the world communicator.
std::unique_ptr<Communicator> make_mpi_communicator();

}  // namespace strata
