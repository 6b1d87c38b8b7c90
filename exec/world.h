// The factory of worlds: from the names a user gives (--device, --dtype, --transport) to the World
// that runs the ranks and the devices they compute on. One table row per transport, so adding a
// transport is its file, its test and one line in Transports() (exec/world.cpp).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "exec/executor.h"
#include "exec/run.h"
#include "reference/dtype.h"

namespace pipeproof {

// Where every rank and the sequential reference compute, and how the ranks talk. Both sides of
// exact mode always run the same device's kernels.
struct WorldSpec {
  std::string device = "cpu";         // cpu (f64, f32) or cuda (f32, bf16)
  std::string dtype = "f64";          // f64, f32, bf16
  std::string transport = "threads";  // a name in TransportNames(); threads on cuda is streams
  StreamLayout streams = StreamLayout::kRank;  // which streams carry a rank's SEND/RECVs
};

struct TransportKind {
  std::string name;
  std::string device;  // the device it runs on: "cpu" or "cuda"
  std::string help;    // one clause for --help
  // What to say to a user who asks for it on the other device.
  std::string other_device_hint;
  // Its ranks are processes under a launcher (mpirun), so a campaign runs each case as a command.
  bool ranks_are_processes = false;
  // "" when this build and machine can run `spec` over it, else why not (a sentence).
  std::string (*unavailable)(const WorldSpec& spec);
  std::unique_ptr<World> (*make_world)();
  // The ranks' and the reference's device; null: the CPU device of the model's dtype.
  DeviceFactory (*make_devices)(DType dtype);
};

const std::vector<TransportKind>& Transports();
std::vector<std::string> TransportNames();

// Refuses a stream layout the transport cannot run, a device, dtype and transport that do not go
// together, --device cuda where this build has no CUDA or this machine no usable GPU, and a
// transport this build or node cannot run (NCCL with fewer GPUs on this node than ranks under
// mpirun): InputError (exit 2), before anything runs.
void CheckWorldSpec(const WorldSpec& spec);

// The row `spec` runs over (threads on cuda: streams). InputError for an unknown name.
const TransportKind& TransportOf(const WorldSpec& spec);

// The world `spec` runs in (checked), and a maker of fresh ones for runners that need one per
// case.
std::unique_ptr<World> MakeWorld(const WorldSpec& spec);
std::function<std::unique_ptr<World>()> WorldMaker(const WorldSpec& spec);

// The ranks' and the reference's device (null for cpu: the CPU device of the model's dtype).
DeviceFactory DevicesFor(const WorldSpec& spec);

}  // namespace pipeproof
