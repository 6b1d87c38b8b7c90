// The sequential reference step and the comparison of a pipelined run with it (docs/design.md,
// "Execution and the reference").
//
// The reference runs every microbatch through its route on one device, one thread: forward, MSE
// loss, backward, in microbatch order. It produces what a pipelined run must produce: the loss of
// every microbatch, the output of every microbatch (the forward-only step of the same weights), and
// the gradient of every parameter block summed over the stages that share it.
//
// Floating-point sums depend on their order, so the reference can replay how a schedule sums:
//  - exact:   each stage adds its microbatches' weight-gradient terms in the order the schedule
//             runs them (program order of the B/W tasks on the stage's rank), into its own
//             accumulator; a block shared by several stages (DualPipe's two copies) is then the
//             sum of its stages' accumulators in increasing stage order. That is what the
//             executor does, so a correct run matches bit for bit.
//  - natural: one accumulator per block, terms added in microbatch order, route order within a
//             microbatch; what a plain single-device loop computes. Compared with tolerance.
#pragma once

#include <string>
#include <vector>

#include "reference/mismatch_report.h"
#include "reference/stage_model.h"
#include "schedule/schedule.h"

namespace pipeproof {

// A parameter block's gradient, on the host.
struct BlockGrads {
  HostTensor w1;  // linear1.weight [4H, H]
  HostTensor w2;  // linear2.weight [H, 4H]
  friend bool operator==(const BlockGrads&, const BlockGrads&) = default;
};

// Everything a step produces, gathered on the host.
struct StepResults {
  std::vector<HostTensor> losses;   // per microbatch, [1, 1]
  std::vector<HostTensor> outputs;  // per microbatch, the last stage's output [L b, H]
  std::vector<BlockGrads> grads;    // per parameter block
  friend bool operator==(const StepResults&, const StepResults&) = default;
};

// The order in which weight-gradient terms are summed. A block's gradient is the sum, in order,
// of its partial sums; a partial sum adds its terms, in order, to a zeroed accumulator.
struct GradTerm {
  int stage = 0;
  int microbatch = 0;
  friend bool operator==(const GradTerm&, const GradTerm&) = default;
};
struct AccumulationOrder {
  std::vector<std::vector<std::vector<GradTerm>>> blocks;  // block -> partial sums -> terms
};

enum class AccumulationMode { kSchedule, kNatural };

// kSchedule: one partial sum per stage holding the block (increasing stage), its terms in the
// order the stage's rank runs its B/W tasks. kNatural: one partial sum per block in microbatch
// order. The schedule must pass the verifier's structure check.
AccumulationOrder AccumulationOrderOf(const Schedule& schedule, AccumulationMode mode);

// The sum of a block's per-stage accumulators, in increasing stage order (the schedule mode's
// grouping). `stage_grads` is indexed by stage; stages not holding the block, and stages with an
// empty entry (no weight-gradient task ran there), are left out. A block no stage added to has a
// zero gradient.
BlockGrads CombineStageGrads(const Schedule& schedule, const ModelConfig& config, int block,
                             const std::vector<BlockGrads>& stage_grads);
BlockGrads ZeroBlockGrads(const ModelConfig& config);

// Runs the sequential reference on `device` (whose dtype must be config.dtype).
StepResults RunReference(const Schedule& schedule, const ModelConfig& config,
                         const AccumulationOrder& order, Device& device);

// Compares a run's results with the reference's: the losses as one tensor (index = microbatch),
// each microbatch's output, each block's two gradients, named after the stages that hold them.
MismatchReport CompareStep(const Schedule& schedule, const StepResults& run,
                           const StepResults& reference, const ComparePolicy& policy);

}  // namespace pipeproof
