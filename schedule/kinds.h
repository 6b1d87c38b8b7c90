// The table of generator kinds: one row per kind, holding everything the rest of pipeproof knows
// about it (its name, which sizes it generates, the activation bound its schedules keep, the
// generator). Verify, fuzz and the command read the table, so adding a kind is its generator, its
// row and its test. The property suites' independent oracle (fuzz/schedule_truth.cpp) keeps its
// own copy of the bounds on purpose.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "schedule/generate.h"
#include "schedule/schedule.h"

namespace pipeproof {

// The most stage-chunks of activations a rank of a kind's schedule holds at once, and why.
struct ActivationBound {
  int bound = 0;
  std::string source;  // "1f1b: R = 4"
};

struct ScheduleKind {
  std::string name;
  // "" when the kind generates `options` (ranks and microbatches already at least 1), else the
  // rule it breaks as a sentence: "dualpipe needs an even number of ranks, at least 2 (got 3)".
  std::string (*size_problem)(const GenerateOptions& options);
  // The schedule of a size that fits: compute-only where `lowered`, else with its own
  // SEND/RECV/WAITs.
  Schedule (*generate)(const GenerateOptions& options);
  // The bound its schedules keep (nullopt: none it promises).
  std::optional<ActivationBound> (*activation_bound)(const Schedule& schedule);
  bool lowered = true;               // Lower() places its SEND/RECVs (and AddWaitSends its waits)
  bool uses_overlap = false;         // GenerateOptions::overlap means something to it
  bool uses_virtual_stages = false;  // so does GenerateOptions::virtual_stages
};

const std::vector<ScheduleKind>& ScheduleKinds();
const ScheduleKind* FindScheduleKind(std::string_view name);  // null for an unknown name
// The row of `name`; InputError naming the known kinds for an unknown one.
const ScheduleKind& ScheduleKindNamed(std::string_view name);
// GeneratorKinds() (generate.h) lists the names in table order.

// The bound of the generator named by `schedule.kind`; nullopt for an unknown kind or one
// without a bound.
std::optional<ActivationBound> KindActivationBound(const Schedule& schedule);

// Sizes the kind generates, for drawing and shrinking cases: rank counts from `min_ranks` to
// `max` (at least the smallest valid one), and microbatch counts for `ranks` up to `max` (at
// least the smallest valid one). Defaults fit virtual_stages = 2, overlap on.
std::vector<int> ValidRanks(const std::string& kind, int max, int min_ranks = 2);
std::vector<int> ValidMicrobatches(const std::string& kind, int ranks, int max);

}  // namespace pipeproof
