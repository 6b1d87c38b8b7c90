// The HTML report of `pipeproof run --html`: the mismatch report of the run against the sequential
// reference (render/html_report.h) with the run's summary, heatmaps of every mismatching tensor,
// and, for a corrupting negative control, the parameter block the corrupted message entered.
#pragma once

#include <string>
#include <vector>

#include "exec/fault_plan.h"
#include "exec/run.h"
#include "render/html_report.h"
#include "schedule/schedule.h"

namespace pipeproof {

// Where a corrupted message (bitflip or swap) entered the computation: the stage that consumed
// its payload and that stage's parameter block.
struct CorruptionSite {
  std::string pass;  // "train" or "inference"
  Payload payload;   // what the message carried
  int stage = 0;  // the stage that used it: an activation's next stage, a gradient's previous one
  int block = 0;  // that stage's parameter block
  std::vector<int> tensors;  // indices into the run's MismatchReport of what it enters first
  std::string description;
};

// The sites of the plan's corruption in `schedule` (one for a bitflip, two for a swap; none
// without a corruption or when the message is not in the run).
std::vector<CorruptionSite> LocateCorruption(const Schedule& schedule, const FaultPlan& faults);

// Heatmaps of the mismatching tensors of a run's comparison (CompareStep's report of run and
// reference); empty when the report does not come from these results.
std::vector<ErrorHeatmap> StepHeatmaps(const Schedule& schedule, const MismatchReport& report,
                                       const StepResults& run, const StepResults& reference);

// The page. Works for every outcome: a hang or a fault has no table, its dump instead.
std::string RunHtmlReport(const RunOutcome& outcome, const Schedule& schedule,
                          const FaultPlan& faults);

}  // namespace pipeproof
