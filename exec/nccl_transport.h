// The NCCL transport (docs/design.md, "Execution and the reference"): one GPU per rank, each rank's
// unit one NCCL group (ncclGroupStart, ncclSend/ncclRecv per op in posting order, ncclGroupEnd)
// on its CudaDevice's communication stream. NCCL gives the `nccl` semantics by definition: FIFO
// per rank pair without tags, the ops of a group progressing together.
//
// Ranks run as MPI processes (`mpirun -np R pipeproof run --transport nccl --device cuda ...`;
// scripts/launch.sh): rank 0 makes the NCCL unique id and the MPI world broadcasts it
// (MakeMpiWorld's transport hook); each process takes GPU (local rank mod GPUs on its node). Or
// as threads of one process (the same command without mpirun), rank r on GPU r, the communicators
// made together by ncclCommInitAll.
// NCCL refuses two ranks on one GPU ("Duplicate GPU detected"): on a one-GPU machine multi-rank
// runs use the streams transport (exec/streams_transport.h).
//
// Faults: post delays are host sleeps before the group is posted, delivery delays a spin kernel
// on the communication stream before it (the unit's longest). A unit completes when an event
// after ncclGroupEnd has passed; the wait polls it and the run's stop signal, and a stop aborts the
// communicator (ncclCommAbort) so that no NCCL kernel is left waiting on the GPU.
//
// libnccl is loaded on first use (dlopen), like cuBLAS, so pipeproof starts as fast without it.
//
// Known limit (untested on hardware so far): NCCL connects a pair of ranks inside the first
// ncclGroupEnd between them, on the host, which no stop can interrupt. If a negative control drops
// the first message of a pair, the receiver may block there: under mpirun the watchdog ends the
// job (MPI_Abort) as usual, but in threads mode the process cannot join that thread. Blocking
// communicators were chosen over non-blocking ones (ncclCommInitRankConfig, blocking = 0) to keep
// the first version simple.
#pragma once

#include <array>
#include <memory>
#include <vector>

#include "exec/mpi_world.h"
#include "exec/transport.h"

namespace pipeproof {

class CudaDevice;

// NCCL's unique id (ncclUniqueId), as bytes to share between processes.
using NcclId = std::array<char, 128>;
NcclId NewNcclId();  // std::runtime_error when NCCL cannot be loaded or fails

// Rank `rank` of `size` on `device`'s GPU; the communicator is made here (collective: every rank
// must construct its transport with the same id). std::runtime_error on failure.
std::unique_ptr<Transport> MakeNcclTransport(const NcclId& id, int rank, int size,
                                             CudaDevice& device, StopSignal& stop);

// Threads mode: one communicator per device (ncclCommInitAll), rank r on devices[r], whose GPUs
// must all differ (InputError otherwise).
std::vector<std::unique_ptr<Transport>> MakeNcclThreadTransports(
    const std::vector<CudaDevice*>& devices, StopSignal& stop);
// The threads world over them (named "nccl"); ExecOptions::make_device must put rank r on GPU r.
std::unique_ptr<World> MakeNcclThreadWorld();
// Whether this process was started by mpirun (Open MPI's, or a PMI launcher's, environment).
bool UnderMpirun();

// The hook for MakeMpiWorld: rank 0's id broadcast over MPI, then MakeNcclTransport with the rank's
// device (which must be a CudaDevice).
MpiTransportFactory NcclOverMpi();

// The GPU this process's rank should use: its local rank on the node (from mpirun's environment:
// OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID, SLURM_LOCALID; 0 when none is set) mod `gpus`.
int LocalGpu(int gpus);
// How many ranks mpirun started on this node (OMPI_COMM_WORLD_LOCAL_SIZE, MPI_LOCALNRANKS,
// SLURM_NTASKS_PER_NODE; 1 when none is set).
int LocalRanks();

}  // namespace pipeproof
