// --device for the commands that run schedules (run, fuzz): where every rank and the sequential
// reference compute. cpu: the CPU device (f64, f32), ranks over the threads or MPI transport.
// cuda: the CUDA device (f32, bf16) on one GPU, ranks as threads over the streams transport
// (exec/streams_transport.h). Both sides of exact mode always run the same device's kernels.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "exec/executor.h"
#include "exec/run.h"

namespace pipeproof {

// Refuses a device, dtype and transport ("threads", "streams", "mpi") that do not go together, and
// --device cuda where this build has no CUDA or this machine no usable GPU: InputError (exit 2),
// before anything runs.
void CheckDeviceFlags(const std::string& device, const std::string& dtype, const std::string& transport);

// The ranks' and the reference's device; null for cpu (the CPU device of the model's dtype).
DeviceFactory DeviceFactoryFor(const std::string& device, DType dtype);

// The world threads-transport ranks run in: the streams world for cuda, null for cpu (threads).
std::function<std::unique_ptr<World>()> ThreadWorldFor(const std::string& device);

}  // namespace pipeproof
