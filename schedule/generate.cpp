// The classic schedules, written as each rank's compute order; Lower() adds the SEND/RECVs.
// DualPipe and DualPipeV, whose communication follows the reference, are in dualpipe.cpp.

#include "schedule/generate.h"

#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <stdexcept>

#include "schedule/lower.h"

namespace pipeproof {
namespace {

void Require(bool ok, const std::string& rule) {
  if (!ok) throw InputError(rule);
}

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

Schedule Pipeline(const std::string& kind, int ranks, int stages, int microbatches) {
  Schedule s;
  s.kind = kind;
  s.ranks = ranks;
  s.stages = stages;
  s.microbatches = microbatches;
  CompleteTopology(s);  // loop placement, own parameters, every microbatch through every stage
  return s;
}

Schedule GPipe(int R, int M) {
  Schedule s = Pipeline("gpipe", R, R, M);
  for (int r = 0; r < R; ++r) {
    ComputeOrder rank(s.program[r]);
    for (int m = 0; m < M; ++m) rank.F(r, m);
    for (int m = 0; m < M; ++m) rank.B(r, m);
  }
  return s;
}

Schedule OneFOneB(int R, int M) {
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
Schedule Interleaved1F1B(int R, int M, int V) {
  Schedule s = Pipeline("interleaved-1f1b", R, R * V, M);
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
Schedule ZeroBubbleH1(int R, int M) {
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

Schedule WithComm(Schedule compute_only) {
  LoweringResult lowered = Lower(compute_only);
  if (!lowered.schedule) {
    throw std::logic_error("pipeproof bug: generated " + compute_only.kind +
                           " cannot be lowered: " + lowered.problem);
  }
  return std::move(*lowered.schedule);
}

}  // namespace

std::vector<std::string> GeneratorKinds() {
  return {"gpipe", "1f1b", "interleaved-1f1b", "zb1p", "dualpipe", "dualpipev"};
}

Schedule ComputeOnly(const Schedule& schedule) {
  Schedule out = schedule;
  for (auto& actions : out.program) {
    std::erase_if(actions,
                  [](const Action& a) { return !IsCompute(a.op) && !IsDataParallel(a.op); });
  }
  return out;
}

Schedule Generate(const GenerateOptions& o) {
  const std::string& kind = o.kind;
  const std::vector<std::string> kinds = GeneratorKinds();
  Require(std::find(kinds.begin(), kinds.end(), kind) != kinds.end(),
          fmt::format("unknown schedule kind '{}' (known: {})", kind,
                      fmt::join(kinds, ", ")));
  Require(o.ranks >= 1, fmt::format("{} needs at least one rank (got {})", kind, o.ranks));
  Require(o.microbatches >= 1,
          fmt::format("{} needs at least one microbatch (got {})", kind, o.microbatches));
  if (kind == "dualpipe" || kind == "dualpipev") {
    Schedule s = kind == "dualpipe" ? GenerateDualPipe(o.ranks, o.microbatches, o.overlap)
                                    : GenerateDualPipeV(o.ranks, o.microbatches, o.overlap);
    return o.with_comm ? s : ComputeOnly(s);
  }
  Schedule s;
  if (kind == "interleaved-1f1b") {
    Require(o.virtual_stages >= 1,
            fmt::format("interleaved-1f1b needs at least one stage per rank (got {})",
                        o.virtual_stages));
    CheckLimits(o.ranks, int64_t{o.ranks} * o.virtual_stages, o.microbatches);
    Require(o.microbatches % o.ranks == 0,
            fmt::format("interleaved-1f1b needs the microbatches to be a multiple of the ranks "
                        "(Megatron's rule; {} is not a multiple of {})",
                        o.microbatches, o.ranks));
    s = Interleaved1F1B(o.ranks, o.microbatches, o.virtual_stages);
  } else {
    CheckLimits(o.ranks, o.ranks, o.microbatches);
    if (kind == "gpipe") s = GPipe(o.ranks, o.microbatches);
    if (kind == "1f1b") s = OneFOneB(o.ranks, o.microbatches);
    if (kind == "zb1p") s = ZeroBubbleH1(o.ranks, o.microbatches);
  }
  if (!o.with_comm) return s;
  s = WithComm(std::move(s));
  return o.wait_sends ? AddWaitSends(s) : s;
}

}  // namespace pipeproof
