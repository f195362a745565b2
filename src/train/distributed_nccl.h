#pragma once
// The GPU data-parallel communicator (train/distributed.h): NCCL sums the gradients on the GPUs (and
// all-gathers ZeRO-1's updated parameters), one GPU per rank, on a stream of its own so that a
// bucket's sum runs while backward goes on; the small host-side collectives (loss, stop flag,
// broadcasts, barriers, ZeRO-1's checkpoint gather and scatter) and NCCL's bootstrap go through the
// host communicator (MPI; or the single-process one, a world of one). Built only in a CUDA build
// that found NCCL (STRATA_HAVE_NCCL); nccl_built() says whether it was.
#include <memory>

#include "train/distributed.h"

namespace strata {

bool nccl_built();

// Makes this process use GPU (local rank mod the GPUs on this node), before any CUDA work: the
// local rank comes from the launcher (OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID, SLURM_LOCALID).
// Throws InputError in a build without NCCL.
void select_local_gpu(const Communicator& host);

// Throws InputError in a build without NCCL. `host` must outlive the result.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& host);

}  // namespace strata
