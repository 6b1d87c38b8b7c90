// Drawing a fault plan from a seed for a run (the `--delay --seed --straggler --shuffle --poison
// --corrupt --kill-rank` flags). Each kind of fault draws from its own stream of the seed, so
// adding --shuffle does not change the delays a seed gives.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "exec/fault_plan.h"
#include "exec/run_plan.h"
#include "reference/stage_model.h"

namespace pipeproof {

enum class DelayDistribution { kUniform, kExponential, kHeavyTailed };

// "uniform:MEAN" (uniform on [0, 2 MEAN]), "exponential:MEAN" (or "exp"), "heavy:MEAN" (Pareto
// with shape 1.5 and this mean, capped at 100 MEAN; also "pareto"). MEAN is a number with a unit
// (us, ms, s; default 100us when left out).
struct DelaySpec {
  DelayDistribution distribution = DelayDistribution::kExponential;
  double mean_us = 100;
  bool at_post = true;     // before posting each communication op
  bool at_deliver = true;  // before delivering each received message
  bool at_compute = true;  // before each compute

  static DelaySpec Parse(std::string_view text);  // InputError naming what is wrong
  // "post,deliver,compute" (any subset); InputError otherwise.
  void ParseWhere(std::string_view text);
  std::string ToString() const;  // "exponential:100us at post,deliver,compute"
};

struct Straggler {
  int rank = 0;
  double factor = 1;
  static Straggler Parse(std::string_view text);  // "R:F", F >= 1
};

struct FaultOptions {
  uint64_t seed = 1;
  std::optional<DelaySpec> delay;
  std::vector<Straggler> stragglers;
  bool shuffle = false;
  bool poison = false;
  std::optional<CorruptKind> corrupt;
  std::optional<int> kill_rank;
};

// What a message holds, to aim a bit flip: `elements` values with `mantissa_bits` explicit
// mantissa bits (f64 52, f32 23, bf16 7). The flip lands in the top three bits of the mantissa or
// the lowest bit of the exponent, so that it changes the value by at least an eighth of itself:
// enough to show in tolerance mode too, not only bit for bit.
struct MessageFormat {
  int64_t elements = 1;
  int mantissa_bits = 52;
};

// What the messages of a run of `model` hold: one activation or gradient, in its dtype.
MessageFormat MessageFormatOf(const ModelConfig& model);

// Draws the plan. Throws InputError when an option does not fit the run (a straggler or killed
// rank out of range; --corrupt swap on a schedule where no unit sends two messages to one rank).
FaultPlan DrawFaultPlan(const RunPlan& run, const FaultOptions& options, const MessageFormat& format,
                        const std::string& schedule_name);

// The counters of `run`, recorded in a drawn plan and checked when a plan is replayed.
PlanTarget TargetOf(const RunPlan& run, const std::string& schedule_name);

// Refuses (InputError) a plan drawn for another run, a plan whose shuffles reorder two messages
// between the same pair of ranks (that is the swap negative control, not a legal shuffle), and
// negative controls that name ranks, messages or actions the run does not have.
void CheckPlanFits(const FaultPlan& plan, const RunPlan& run);

}  // namespace pipeproof
