// The executor: runs one rank's program, action by action, over a Transport on a Device, with a
// fault plan applied and a flight recorder kept. Every transport uses this same code per rank:
// threads of one process (exec/run.h), MPI processes (exec/mpi_world.h), threads on one GPU
// (exec/streams_transport.h) and NCCL ranks (exec/nccl_transport.h).
//
// How it runs a rank:
//   - Computes run in program order on the rank's thread, with the stage model of reference/.
//   - SEND/RECVs form units (exec/run_plan.h). A rank with WAITs posts each group at its WAIT and
//     blocks until it completes. A rank without WAITs hands each SEND/RECV as its own unit to
//     its communication stream, a thread that runs units one at a time in program order; a
//     compute then waits only for the unit that brings its input, and the pass ends when the
//     stream is empty. Either way a unit is posted only after every earlier compute finished:
//     on a GPU the rank waits for its compute stream (Device::Synchronize) before posting, so a
//     send's copy never reads a payload that a kernel is still writing.
//   - Buffers are freed as soon as the schedule allows: a sent payload when its unit completes,
//     the forward's saved tensors at I/B, the weight-gradient stash at W. Freed memory returns to
//     the device's pool (and is NaN-poisoned when the plan says so), so a buffer used after it
//     was freed shows up as wrong results.
//   - Weight gradients accumulate per stage in program order; the results are each rank's losses
//     (train pass), outputs (forward-only pass) and per-stage gradients.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "exec/fault_plan.h"
#include "exec/flight_recorder.h"
#include "exec/run_plan.h"
#include "exec/run_timeline.h"
#include "exec/transport.h"
#include "reference/reference.h"

namespace pipeproof {

// ---- planted bugs (test hook of the fuzz campaign; begin) ----
// Known executor bugs that can be switched on, to prove the harness finds them (the fuzz
// campaign's planted-bug test). Never on in a normal run: only ExecOptions::planted_bug or the
// environment variable PIPEPROOF_PLANTED_BUG switch one on, and the run's fault summary says so.
enum class PlantedBug {
  kNone,
  kReleaseSendEarly,  // free a send's payload when its unit is posted, not when it completes
  kSkipArrivalWait,   // on a rank without WAITs, compute on a received input without waiting for it
  // Post a unit without waiting for the computes queued before it (the compute-stream event a
  // GPU's communication needs): on the CPU a no-op, on a GPU a race between a send's copy and the
  // kernel still producing its payload.
  kSkipComputeEvent,
  // Go on past a WAIT_SEND without waiting for its SEND, and free the send's payload there (as
  // PyTorch frees it when the wait returns): a message still in flight carries a freed buffer.
  kIgnoreWaitSend,
};
// "none", "release-send-early", "skip-arrival-wait", "skip-compute-event", "ignore-wait-send"
std::string_view PlantedBugName(PlantedBug bug);
std::optional<PlantedBug> PlantedBugFromName(std::string_view name);
// The variable that lets `pipeproof run` (and mpirun's processes) reproduce what the fuzz campaign
// found with a planted bug: PIPEPROOF_PLANTED_BUG=release-send-early pipeproof run ... --replay P
inline constexpr const char* kPlantedBugVariable = "PIPEPROOF_PLANTED_BUG";
// The bug the variable names; kNone when it is unset or empty. InputError for an unknown name.
PlantedBug PlantedBugFromEnvironment();
// ---- planted bugs (end) ----

// Makes the device a rank computes on (rank -1: the sequential reference's). Default: the CPU
// device of the model's dtype.
using DeviceFactory = std::function<std::unique_ptr<Device>(int rank)>;

struct ExecOptions {
  ModelConfig model;
  DeviceFactory make_device;
  size_t flight_capacity = 64;  // events kept per rank
  bool record_timeline = false;  // keep every compute's and unit's start and end (RankResult::timeline)
  PlantedBug planted_bug = PlantedBug::kNone;
};

// What one rank computed.
struct RankResult {
  int rank = 0;
  std::vector<std::pair<int, HostTensor>> losses;       // microbatch -> loss, train pass
  std::vector<std::pair<int, HostTensor>> outputs;      // microbatch -> output, forward-only pass
  std::vector<std::pair<int, BlockGrads>> stage_grads;  // stage -> accumulated weight gradients
  MemoryStats memory;                                   // the rank's device at the end
  std::vector<RecordedSpan> timeline;                   // ExecOptions::record_timeline: what ran when

  std::string Serialize() const;  // for sending to another process
  static RankResult Deserialize(std::string_view bytes);  // throws std::runtime_error
  friend bool operator==(const RankResult&, const RankResult&) = default;
};

enum class RankEnd {
  kFinished,
  kStopped,  // the run was stopped (a hang elsewhere, another rank's failure)
  kDead,     // killed by the fault plan
  kFailed,   // an error: a missing input, a transport failure, ...
};

struct RankOutcome {
  RankEnd end = RankEnd::kFinished;
  std::string error;  // kFailed
  RankResult result;
};

std::unique_ptr<Device> MakeDevice(const ExecOptions& options, int rank);

// Runs every pass of `plan` for `transport.rank()`. Never throws; errors end as kFailed.
RankOutcome RunRank(const RunPlan& plan, const FaultPlan& faults, const ExecOptions& options,
                    Transport& transport, Device& device, FlightRecorder& recorder, StopSignal& stop);

// The ranks' results put together: losses and outputs by microbatch, block gradients combined
// from their stages in increasing stage order (CombineStageGrads). Throws std::runtime_error when
// something is missing.
StepResults AssembleResults(const Schedule& schedule, const ModelConfig& config,
                            const std::vector<RankResult>& ranks);

}  // namespace pipeproof
