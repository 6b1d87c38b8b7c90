#include "exec/schedule_run.h"

#include <algorithm>

#include "exec/memory_budget.h"

namespace pipeproof {
namespace {

// Whether the deadlock check is the only one that failed: the schedule is well formed, so it can
// run, and it hangs.
bool OnlyDeadlockFails(const VerifyReport& report) {
  for (const CheckResult& c : report.checks) {
    if (!c.ok() && c.name != "deadlock") return false;
  }
  return true;
}

// The fault plan for `options`: drawn, or the replayed one as it is.
FaultPlan RunFaults(const Schedule& schedule, const ScheduleRunOptions& options) {
  if (options.replay) return *options.replay;
  return DrawFaultPlan(PlanRun(schedule), options.draw, MessageFormatOf(options.model),
                       options.schedule_name);
}

}  // namespace

ScheduleRun RunSchedule(const Schedule& schedule, const ScheduleRunOptions& options, World& world) {
  if (schedule.forward_only) {
    // The run compares gradients with the reference's training step; a forward-only pass has none.
    throw InputError("the schedule is a forward-only pass ('pass forward'): run executes training "
                     "schedules, and runs their forward-only pass after each of them; verify checks this one");
  }
  ScheduleRun result;
  VerifyOptions verify = options.verify;
  verify.model = CommModel::kNccl;  // what the executor does
  verify.streams = options.world.streams;
  verify.progress = options.progress;
  const int64_t verifier_bytes = VerifierMemoryBytes(schedule, verify);
  CheckVerifierFitsInMemory(verifier_bytes, schedule.ActionCount());
  result.report = Verify(schedule, verify);
  if (!result.report.ok && !(options.allow_deadlock && OnlyDeadlockFails(result.report))) {
    return result;
  }
  if (options.world.device == "cpu") {
    MemoryEstimate estimate = EstimateRunMemory(schedule, options.model, result.report.memory.peak,
                                                result.report.memory.stash_peak,
                                                !TransportOf(options.world).ranks_are_processes);
    estimate.verifier_bytes = verifier_bytes;
    CheckRunFitsInMemory(estimate, options.model);
  }
  result.faults = RunFaults(schedule, options);
  if (options.on_start && world.leader()) options.on_start(result.report, result.faults);

  RunOptions run;
  run.streams = options.world.streams;
  run.exec.model = options.model;
  // Every rank and the reference on the same kind of device: exact mode compares like kernels.
  run.exec.make_device = DevicesFor(options.world);
  run.exec.flight_capacity = std::max<size_t>(options.watchdog.flight_tail, 16);
  run.exec.record_timeline = options.record_timeline;
  run.policy = options.policy;
  run.faults = result.faults;
  run.watchdog = options.watchdog;
  run.watchdog.progress = options.progress;
  run.progress = options.progress;
  run.schedule_name = options.schedule_name;
  if (options.on_fatal) {
    run.on_fatal = [&](const RunOutcome& outcome) { options.on_fatal(outcome, result.faults); };
  }
  result.outcome = RunAndCompare(schedule, run, world);
  return result;
}

}  // namespace pipeproof
