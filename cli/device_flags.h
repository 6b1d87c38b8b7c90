// --device for the commands that run schedules (run, fuzz): where every rank and the sequential
// reference compute. cpu: the CPU device (f64, f32), ranks over the threads or MPI transport.
// cuda: the CUDA device (f32, bf16); ranks as threads on one GPU over the streams transport
// (exec/streams_transport.h), or with --transport nccl one GPU per rank, ranks as MPI processes
// under mpirun or as threads (exec/nccl_transport.h). Both sides of exact mode always run the same
// device's kernels.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "exec/executor.h"
#include "exec/run.h"

namespace pipeproof {

// Refuses a device, dtype and transport ("threads", "streams", "mpi", "nccl") that do not go
// together, --device cuda where this build has no CUDA or this machine no usable GPU, and
// --transport nccl with fewer GPUs on this node than ranks: InputError (exit 2), before anything
// runs.
void CheckDeviceFlags(const std::string& device, const std::string& dtype,
                      const std::string& transport);

// The ranks' and the reference's device; null for cpu (the CPU device of the model's dtype).
// With nccl, each process's rank takes GPU (local rank mod GPUs).
DeviceFactory DeviceFactoryFor(const std::string& device, DType dtype,
                               const std::string& transport);

// The NCCL transport's world: MPI processes under mpirun, threads of this process otherwise
// (InputError where this build has no NCCL transport).
std::unique_ptr<World> NcclWorld();

// The world threads-transport ranks run in: the streams world for cuda, null for cpu (threads).
std::function<std::unique_ptr<World>()> ThreadWorldFor(const std::string& device);

}  // namespace pipeproof
