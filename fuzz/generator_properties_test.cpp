// Property suite 1: every generator, at random valid sizes (up to 16 ranks, up to 8 x ranks
// microbatches), makes a schedule that verifies, whose activation peak stays within its kind's
// bound, and whose bubbles are the papers' formulas under uniform costs:
//   DualPipe (even R, I = B - W): the largest per-rank bubble is (R/2 - 1)(FB + B - 3W), for
//     F=1,B=2,W=1,FB=3 and for F=2,B=3,W=1,FB=4.2 (DeepSeek-V3 report, Table 2);
//   1F1B: every rank idles (R - 1)(F + B).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "fuzz/property.h"
#include "fuzz/schedule_gen.h"
#include "fuzz/schedule_truth.h"
#include "verify/verify.h"

namespace pipeproof {
namespace {

// Z3 proves the deadlock verdict on schedules up to this many actions; beyond, the event
// simulation alone decides (suite 2 checks that the two agree, on smaller schedules).
constexpr int64_t kZ3Actions = 1500;

PIPEPROOF_PROPERTY(GeneratorProperties, EveryGeneratedScheduleVerifiesWithinItsMemoryBound, ()) {
  const GenerateOptions options = *GenValidOptions(16, 8);
  const Schedule s = Generate(options);
  VerifyOptions verify;
  verify.model = *rc::gen::element(CommModel::kNccl, CommModel::kEager);
  verify.use_z3 = s.ActionCount() <= kZ3Actions;
  const VerifyReport report = Verify(s, verify);
  RC_TAG(options.kind);
  RC_ASSERT(report.ok);
  // The memory check passed against the kind's bound; the bound and the peak are also worked out
  // here from their definitions.
  const std::optional<ActivationBound> bound = KindActivationBound(s);
  RC_ASSERT(bound.has_value());
  RC_ASSERT(bound->bound == truth::KindBound(s));
  const int peak = *std::max_element(report.memory.peak.begin(), report.memory.peak.end());
  RC_ASSERT(peak == truth::PeakActivations(s));
  RC_ASSERT(peak <= bound->bound);
}

struct UniformCosts {
  double f, b, w, fb;
  Costs ToCosts() const {
    Costs c;
    c.forward = f;
    c.backward = b;
    c.weight_grad = w;
    c.input_grad = b - w;
    c.overlap_fb = fb;
    return c;
  }
};

void showValue(const UniformCosts& c, std::ostream& os) {
  os << "F=" << c.f << " B=" << c.b << " W=" << c.w << " FB=" << c.fb;
}

PIPEPROOF_PROPERTY(GeneratorProperties, DualPipeLargestBubbleIsThePapersFormula, ()) {
  const int ranks = 2 * *rc::gen::inRange(1, 9);                          // 2..16, even
  const int microbatches = 2 * *rc::gen::inRange(ranks, 4 * ranks + 1);  // 2R..8R, even
  const UniformCosts costs = *rc::gen::element(UniformCosts{1, 2, 1, 3}, UniformCosts{2, 3, 1, 4.2});
  const CommModel model = *rc::gen::element(CommModel::kNccl, CommModel::kEager);
  const Schedule s = Generate({.kind = "dualpipe", .ranks = ranks, .microbatches = microbatches});
  const Timeline t = Simulate(s, model, costs.ToCosts());
  RC_ASSERT(t.complete);
  const double formula = (ranks / 2 - 1) * (costs.fb + costs.b - 3 * costs.w);
  RC_ASSERT(std::abs(t.MaxBubble() - formula) < 1e-9);
}

// DualPipeV is DualPipe cut in half: R ranks hold 2R stages on the V placement, so the paper's
// (PP/2-1)(F&B+B-3W) holds with PP = 2R stages.
PIPEPROOF_PROPERTY(GeneratorProperties, DualPipeVLargestBubbleIsThePapersFormulaOverStages, ()) {
  const int ranks = *rc::gen::inRange(2, 17);
  const int microbatches = *rc::gen::inRange(2 * ranks, 8 * ranks + 1);
  const UniformCosts costs = *rc::gen::element(UniformCosts{1, 2, 1, 3}, UniformCosts{2, 3, 1, 4.2});
  const CommModel model = *rc::gen::element(CommModel::kNccl, CommModel::kEager);
  const Schedule s = Generate({.kind = "dualpipev", .ranks = ranks, .microbatches = microbatches});
  const Timeline t = Simulate(s, model, costs.ToCosts());
  RC_ASSERT(t.complete);
  const int stages = 2 * ranks;
  const double formula = (stages / 2 - 1) * (costs.fb + costs.b - 3 * costs.w);
  RC_ASSERT(std::abs(t.MaxBubble() - formula) < 1e-9);
}

PIPEPROOF_PROPERTY(GeneratorProperties, OneFOneBBubbleIsRMinusOneTimesFPlusB, ()) {
  const int ranks = *rc::gen::inRange(1, 17);
  const int microbatches = *rc::gen::inRange(1, 8 * ranks + 1);
  const UniformCosts costs = *rc::gen::element(UniformCosts{1, 2, 1, 3}, UniformCosts{2, 3, 1, 4.2});
  const CommModel model = *rc::gen::element(CommModel::kNccl, CommModel::kEager);
  const Schedule s = Generate({.kind = "1f1b", .ranks = ranks, .microbatches = microbatches});
  const Timeline t = Simulate(s, model, costs.ToCosts());
  RC_ASSERT(t.complete);
  const double formula = (ranks - 1) * (costs.f + costs.b);
  for (double bubble : t.bubble) RC_ASSERT(std::abs(bubble - formula) < 1e-9);
}

}  // namespace
}  // namespace pipeproof
