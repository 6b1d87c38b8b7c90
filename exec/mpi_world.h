// Ranks as MPI processes: `mpirun -np R pipeproof run --transport mpi ...`. Each process runs one
// rank with the same executor as the threads world, over MpiTransport:
//   - a unit's ops are MPI_Issend/MPI_Irecv on a private communicator, completed by polling
//     (MPI_Issend: a send completes only once its receive is matched, the `nccl` rendezvous);
//   - results go to rank 0, which runs the reference and compares; every process exits with
//     rank 0's verdict.
// The watchdog works across processes. A process whose rank has made no progress for --timeout
// seconds (and is not computing) asks every other process for its flight recorder over a second
// communicator. If no answering rank has made progress either, it prints every rank's dump
// (ranks that never answer are named as dead or stuck) and ends the job with MPI_Abort(3); if
// one has, it waits and asks again. No process ever blocks inside an MPI call: every wait polls,
// so a rank stuck on a dead peer still answers and can be aborted. A rank that fails does the
// same at once.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "exec/run.h"

namespace pipeproof {

bool HaveMpi();  // built with MPI

// This process's place in the MPI world, for a transport that sets itself up over MPI.
struct MpiRank {
  int rank = 0;
  int size = 1;
  // Copies rank 0's `bytes` at `data` to every process (collective: every process calls it).
  std::function<void(void* data, size_t bytes)> broadcast;
};
// Makes the rank's transport in place of MpiTransport (the NCCL transport, exec/nccl_transport.h),
// once the rank's device exists.
using MpiTransportFactory =
    std::function<std::unique_ptr<Transport>(const MpiRank& rank, Device& device, StopSignal& stop)>;

// Starts MPI in this process (MPI_Init_thread) and ends it (MPI_Finalize) when the world goes.
// At most one per process. Throws InputError when pipeproof was built without MPI, or when MPI
// cannot give the thread support it needs. With `make_transport`, messages go over the transport
// it makes and the world is named `name`; MPI still carries the watchdog and the results.
std::unique_ptr<World> MakeMpiWorld(MpiTransportFactory make_transport = nullptr, std::string name = "mpi");

}  // namespace pipeproof
