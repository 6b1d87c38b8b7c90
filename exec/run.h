// `pipeproof run` as a library call: execute a schedule on real ranks under a fault plan, run
// the sequential reference, compare, and say what happened.
//
// A World owns the ranks: ThreadWorld runs them as threads of this process over the in-process
// transport; the MPI world (exec/mpi_world.h) runs one rank per process. Both watch for hangs:
// when no rank has made progress for `timeout` seconds while none is busy computing or sleeping
// an injected delay, the run is stopped and every rank's flight recorder is dumped.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "exec/executor.h"
#include "exec/fault_plan.h"
#include "exec/flight_recorder.h"
#include "exec/inproc_transport.h"
#include "exec/run_plan.h"
#include "exec/run_timeline.h"
#include "reference/mismatch_report.h"
#include "reference/reference.h"

namespace pipeproof {

// Reports how long work is going: `phase` ("executing", "reference"), `done` of `total` steps
// (total 0: unknown). Called from the thread that watches the run; must return quickly.
using ProgressCallback = std::function<void(std::string_view phase, int64_t done, int64_t total)>;

struct WatchdogOptions {
  double timeout_s = 30;   // a hang is declared after this long without progress
  size_t flight_tail = 8;  // events per rank in the dump
  // Threads transport: called every watchdog tick with the computes finished over all ranks.
  ProgressCallback progress;
};

// How an execution ended, on the world's leader.
struct Execution {
  enum class End { kComplete, kHang, kFailed } end = End::kComplete;
  std::vector<RankResult> ranks;  // kComplete, on the leader: every rank's results, by rank
  std::string headline;           // kHang, kFailed: one line
  std::vector<RankSnapshot> snapshots;  // kHang, kFailed: every rank's flight recorder
  double seconds = 0;
};

class World {
 public:
  virtual ~World() = default;
  virtual std::string TransportName() const = 0;
  virtual int ranks() const = 0;  // 0: as many as the schedule has (threads)
  // The process that reports (always true for threads; rank 0 under MPI).
  virtual bool leader() const = 0;
  // Runs this world's ranks through every pass. A world that cannot return from a hang or a
  // failed rank (MPI ends the job) first calls `on_hang` on the process that found it.
  virtual Execution Execute(const RunPlan& plan, const FaultPlan& faults, const ExecOptions& options,
                            const WatchdogOptions& watchdog,
                            const std::function<void(const Execution&)>& on_hang) = 0;
  // Every process returns the leader's exit status.
  virtual int AgreeOnStatus(int status) { return status; }
};

// Every rank's end of the transport, by rank, for ranks that are threads of this process; made
// once the ranks' devices exist (`devices[r]` is rank r's).
using EndpointFactory = std::function<std::vector<std::unique_ptr<Transport>>(
    const std::vector<Device*>& devices, StopSignal& stop)>;
// InProcessFabric's endpoints; `make_copier` makes the fabric's copier from the devices (null or
// empty: host memcpy).
using CopierFactory = std::function<std::shared_ptr<MessageCopier>(const std::vector<Device*>& devices)>;
EndpointFactory FabricEndpoints(CopierFactory make_copier = nullptr);

// Ranks as threads of this process, named `name` in reports, over the endpoints `make_endpoints`
// makes (null: FabricEndpoints()). The streams transport is the fabric with a device copier
// (exec/streams_transport.h); NCCL's threads mode has one communicator per rank's GPU
// (exec/nccl_transport.h).
std::unique_ptr<World> MakeThreadWorld(std::string name = "threads", EndpointFactory make_endpoints = nullptr);

enum class RunStatus {
  kMatch,     // exit 0
  kMismatch,  // exit 1: results differ from the reference (a caught bitflip or swap included)
  kHang,      // exit 3: the watchdog stopped a hang (a caught drop or kill included)
  kFault,     // exit 3: a rank failed, or a negative control went uncaught
};
std::string_view RunStatusName(RunStatus status);  // "match", "mismatch", "hang", "fault"

struct RunOutcome {
  RunStatus status = RunStatus::kMatch;
  bool leader = true;  // this process prints
  std::string headline;
  std::optional<MismatchReport> comparison;
  Execution execution;
  std::string negative_control;  // what the plan's negative control was and whether it was caught
  bool control_caught = true;
  double reference_seconds = 0;
  std::string transport;
  StreamLayout streams = StreamLayout::kRank;
  std::string schedule_name;
  ModelConfig model;
  std::string faults_summary;
  // ExecOptions::record_timeline and the execution completed: what ran when (also in Json()).
  std::optional<RunTimeline> timeline;
  // A completed execution, on the leader: both sides of the comparison, for pictures of where
  // the tensors differ (render/html_report.h).
  std::optional<StepResults> run_results;
  std::optional<StepResults> reference_results;

  int ExitCode() const;
  std::string Text() const;  // what `pipeproof run` prints
  std::string Json() const;  // the --report file
};

struct RunOptions {
  ExecOptions exec;
  // Which streams run a rank's SEND/RECVs (ranks without WAITs): one per rank, per peer or per
  // peer and direction, each a thread of the rank; under `pair` the first unit with a peer first
  // waits for that peer's first unit with it (Transport::Connect). The NCCL transport, with one
  // communicator per rank, runs `rank` only (CheckWorldSpec, exec/world.h, refuses the others).
  StreamLayout streams = StreamLayout::kRank;
  ComparePolicy policy;  // exact: the reference replays the schedule's sums; tolerance: natural order
  FaultPlan faults;
  WatchdogOptions watchdog;
  std::string schedule_name;  // for messages and the report
  // Called with the outcome of a hang on the process that found it, when the world ends the job
  // right after (MPI): print it and write the report there.
  std::function<void(const RunOutcome&)> on_fatal;
  // Progress of the long phases (executing, the reference, the comparison); may be empty.
  ProgressCallback progress;
};

// The NCCL transport has one communicator per rank, so it runs the rank layout only: InputError
// for another layout on a world named nccl, saying what runs that layout. RunAndCompare checks it;
// the world factory (exec/world.h) checks it first.
void CheckStreamsFitTransport(StreamLayout streams, std::string_view transport);

// Runs `schedule` (with SEND/RECV; verified) in `world` and compares it with the reference.
RunOutcome RunAndCompare(const Schedule& schedule, const RunOptions& options, World& world);

}  // namespace pipeproof
