// The classic schedules, written as each rank's compute order; Lower() adds the SEND/RECVs.
// DualPipe and DualPipeV, whose communication follows the reference, are in dualpipe.cpp.

#include "schedule/generate.h"

#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <stdexcept>

#include "schedule/generators.h"
#include "schedule/kinds.h"
#include "schedule/lower.h"

namespace pipeproof {
namespace {

// One rank's compute order as it is written down.
class ComputeOrder {
 public:
  ComputeOrder(std::vector<Action>& out) : out_(out) {}
  void F(int stage, int mb) { out_.push_back(Action::Compute(Op::kForward, stage, mb)); }
  void B(int stage, int mb) { out_.push_back(Action::Compute(Op::kBackward, stage, mb)); }
  // An input-gradient backward whose weight gradient waits in a FIFO for W().
  void I(int stage, int mb) {
    out_.push_back(Action::Compute(Op::kInputGrad, stage, mb));
    deferred_.push_back(Action::Compute(Op::kWeightGrad, stage, mb));
  }
  void W() {
    out_.push_back(deferred_.front());
    deferred_.pop_front();
  }
  bool HasDeferredW() const { return !deferred_.empty(); }

 private:
  std::vector<Action>& out_;
  std::deque<Action> deferred_;
};

Schedule Pipeline(const std::string& kind, int ranks, int64_t stages, int microbatches) {
  CheckLimits(ranks, stages, microbatches);
  Schedule s;
  s.kind = kind;
  s.ranks = ranks;
  s.stages = static_cast<int>(stages);
  s.microbatches = microbatches;
  CompleteTopology(s);  // loop placement, own parameters, every microbatch through every stage
  return s;
}

}  // namespace

namespace generators {

Schedule GPipe(const GenerateOptions& o) {
  const int R = o.ranks, M = o.microbatches;
  Schedule s = Pipeline("gpipe", R, R, M);
  for (int r = 0; r < R; ++r) {
    ComputeOrder rank(s.program[r]);
    for (int m = 0; m < M; ++m) rank.F(r, m);
    for (int m = 0; m < M; ++m) rank.B(r, m);
  }
  return s;
}

Schedule OneFOneB(const GenerateOptions& o) {
  const int R = o.ranks, M = o.microbatches;
  Schedule s = Pipeline("1f1b", R, R, M);
  for (int r = 0; r < R; ++r) {
    ComputeOrder rank(s.program[r]);
    const int warmup = std::min(R - 1 - r, M);
    for (int m = 0; m < warmup; ++m) rank.F(r, m);            // warm-up: fill the pipe
    for (int m = 0; m < M - warmup; ++m) {                    // steady: one F, one B
      rank.F(r, warmup + m);
      rank.B(r, m);
    }
    for (int m = M - warmup; m < M; ++m) rank.B(r, m);         // cool-down: drain it
  }
  return s;
}

// Megatron-LM's interleaved 1F1B: rank r holds stages r, r+R, ..., r+(V-1)R. Microbatches go in
// groups of R, each group through the rank's first chunk, then its second, ...; backwards walk
// the chunks in reverse.
Schedule Interleaved1F1B(const GenerateOptions& o) {
  const int R = o.ranks, M = o.microbatches, V = o.virtual_stages;
  Schedule s = Pipeline("interleaved-1f1b", R, int64_t{R} * V, M);
  const int units = M * V;
  auto microbatch = [&](int k) { return (k / (R * V)) * R + k % R; };
  auto forward_stage = [&](int r, int k) { return ((k % (R * V)) / R) * R + r; };
  auto backward_stage = [&](int r, int k) { return (V - 1 - (k % (R * V)) / R) * R + r; };
  for (int r = 0; r < R; ++r) {
    ComputeOrder rank(s.program[r]);
    int warmup = V == 1 ? R - 1 - r : (R - 1 - r) * 2 + (V - 1) * R;
    warmup = std::min(warmup, units);
    for (int k = 0; k < warmup; ++k) rank.F(forward_stage(r, k), microbatch(k));
    for (int k = 0; k < units - warmup; ++k) {
      rank.F(forward_stage(r, warmup + k), microbatch(warmup + k));
      rank.B(backward_stage(r, k), microbatch(k));
    }
    for (int k = units - warmup; k < units; ++k) rank.B(backward_stage(r, k), microbatch(k));
  }
  return s;
}

// ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism"): 1F1B with the backward split into I
// and W; rank r holds back its first r weight gradients, which then fill the cool-down bubble.
Schedule ZeroBubbleH1(const GenerateOptions& o) {
  const int R = o.ranks, M = o.microbatches;
  Schedule s = Pipeline("zb1p", R, R, M);
  for (int r = 0; r < R; ++r) {
    ComputeOrder rank(s.program[r]);
    const int warmup = std::min(R - 1 - r, M);
    for (int m = 0; m < warmup; ++m) rank.F(r, m);
    for (int m = 0; m < M - warmup; ++m) {
      rank.F(r, warmup + m);
      rank.I(r, m);
      if (m >= r) rank.W();
    }
    for (int m = M - warmup; m < M; ++m) {
      rank.I(r, m);
      rank.W();
    }
    while (rank.HasDeferredW()) rank.W();
  }
  return s;
}

}  // namespace generators

namespace {

Schedule WithComm(Schedule compute_only) {
  LoweringResult lowered = Lower(compute_only);
  if (!lowered.schedule) {
    throw std::logic_error("pipeproof bug: generated " + compute_only.kind +
                           " cannot be lowered: " + lowered.problem);
  }
  return std::move(*lowered.schedule);
}


}  // namespace

Schedule ComputeOnly(const Schedule& schedule) {
  Schedule out = schedule;
  for (auto& actions : out.program) {
    std::erase_if(actions,
                  [](const Action& a) { return !IsCompute(a.op) && !IsDataParallel(a.op); });
  }
  return out;
}

namespace {

// What is generated must read back: the readers refuse more than kMaxActions actions.
Schedule WithinActionLimit(Schedule s, const GenerateOptions& o) {
  if (s.ActionCount() > kMaxActions) {
    throw InputError(fmt::format("{} with {} ranks and {} microbatches has {} actions, more than a schedule "
                                 "may hold ({}): use fewer microbatches",
                                 o.kind, o.ranks, o.microbatches, s.ActionCount(), kMaxActions));
  }
  return s;
}

}  // namespace

Schedule Generate(const GenerateOptions& o) {
  const ScheduleKind* kind = &ScheduleKindNamed(o.kind);
  if (o.ranks < 1) throw InputError(fmt::format("{} needs at least one rank (got {})", o.kind, o.ranks));
  if (o.microbatches < 1) {
    throw InputError(
        fmt::format("{} needs at least one microbatch (got {})", o.kind, o.microbatches));
  }
  if (std::string rule = kind->size_problem(o); !rule.empty()) throw InputError(rule);
  Schedule s = kind->generate(o);
  if (!kind->lowered) {
    if (!o.with_comm) s = ComputeOnly(s);
  } else if (o.with_comm) {
    s = WithComm(std::move(s));
    if (o.wait_sends) s = AddWaitSends(s);
  }
  return WithinActionLimit(std::move(s), o);
}

Schedule GenerateDualPipe(int ranks, int microbatches, bool overlap) {
  return Generate({.kind = "dualpipe", .ranks = ranks, .microbatches = microbatches, .overlap = overlap});
}

Schedule GenerateDualPipeV(int ranks, int microbatches, bool overlap) {
  return Generate({.kind = "dualpipev", .ranks = ranks, .microbatches = microbatches, .overlap = overlap});
}

}  // namespace pipeproof
