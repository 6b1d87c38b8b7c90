// The one-GPU streams transport (docs/design.md, "Execution and the reference"): every rank a thread of
// this process with its own CudaDevice (its own compute and communication streams) on the same
// GPU; a matched SEND/RECV becomes a device-to-device copy. It is the threads transport with
// another MessageCopier (exec/inproc_transport.h), so the `nccl` semantics (units, FIFO per rank
// pair, rendezvous, completion of both ends together) are the very same code.
//
// Ordering across streams:
//   - before a unit is posted, the rank waits for its compute stream (the executor's
//     Device::Synchronize), so the payloads its sends carry and the poisoning fills of the
//     buffers its receives were given are complete; PlantedBug::kSkipComputeEvent leaves that
//     wait out, to show that the fuzz campaign finds the race;
//   - the copy (after a spin kernel holding back a delivery delay) runs on the receiver's
//     communication stream; a CUDA event after it tells both ends when it is done, and only then
//     do their units complete: the receiver's computes read the message, and the sender frees
//     (and may poison) its payload, strictly after the copy.
// Post delays stay host sleeps before posting, as on the CPU.
#pragma once

#include <memory>
#include <vector>

#include "exec/inproc_transport.h"
#include "exec/run.h"

namespace pipeproof {

// Copies between the ranks' devices; `devices[r]` is rank r's and must be a CudaDevice
// (InputError otherwise).
std::shared_ptr<MessageCopier> MakeStreamsCopier(const std::vector<Device*>& devices);

// The threads world over the streams copier (named "streams"); ExecOptions::make_device must make
// CUDA devices.
std::unique_ptr<World> MakeStreamsWorld();

}  // namespace pipeproof
