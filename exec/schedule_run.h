// `pipeproof run` as one library call: verify the schedule under the model the executor has,
// refuse what fails (or, asked to, run a schedule whose only fault is a deadlock, to watch it
// hang), check that the run fits in memory with the verifier's own peaks, draw or replay the fault
// plan, execute it in a world, and compare with the sequential reference.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "exec/fault_draw.h"
#include "exec/fault_plan.h"
#include "exec/run.h"
#include "exec/world.h"
#include "verify/verify.h"

namespace pipeproof {

struct ScheduleRunOptions {
  WorldSpec world;  // its stream layout too
  // The verification before the run: its proof settings (use_z3, z3_search, the caps) are taken
  // from here; the model, layout and progress are the run's own.
  VerifyOptions verify;
  // Run a schedule whose deadlock check alone fails (the watchdog stops the hang: exit 3).
  bool allow_deadlock = false;
  ModelConfig model;
  ComparePolicy policy = ComparePolicy::Exact();
  FaultOptions draw;                // the faults to draw, unless
  std::optional<FaultPlan> replay;  // a recorded plan is replayed
  WatchdogOptions watchdog;
  bool record_timeline = false;
  std::string schedule_name;
  // Live progress of the verification and of the run's long phases (may be empty).
  ProgressCallback progress;
  // Called on the world's leader once verification let the schedule through and the plan is
  // known, before anything runs (to say that a deadlock runs anyway, to save the plan).
  std::function<void(const VerifyReport& report, const FaultPlan& plan)> on_start;
  // As RunOptions::on_fatal, with the plan.
  std::function<void(const RunOutcome& outcome, const FaultPlan& plan)> on_fatal;
};

struct ScheduleRun {
  VerifyReport report;
  FaultPlan faults;
  std::optional<RunOutcome> outcome;  // when it ran
  bool refused() const { return !outcome; }  // the schedule fails verification: nothing ran (exit 2)
};

// `schedule` must have its SEND/RECVs (LowerIfComputeOnly lowers a compute-only one); `world` is
// the one MakeWorld(options.world) made. Throws InputError for a run that does not fit in memory
// and for faults that do not fit the schedule.
ScheduleRun RunSchedule(const Schedule& schedule, const ScheduleRunOptions& options, World& world);

}  // namespace pipeproof
