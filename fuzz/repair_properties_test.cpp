// Property suite 6: repair. A generated schedule (random kind and size; for the WAIT_SEND classes
// with PyTorch's WAIT_SENDs added) gets one mutation of a class at a random place, and is repaired
// under a random communication model and stream layout. Judged by fuzz/schedule_truth.h, never by
// the verifier:
//   - a repaired schedule runs to its end with every dependency and FIFO match right;
//   - its computes are the mutant's, in the same order on every rank;
//   - it changes no more than re-lowering the compute order would, and the edits it lists,
//     applied to the mutant at their positions (verify/repair_test_util.h), rebuild it;
//   - "the compute order cannot run" only where it really cannot: its computes are malformed, or
//     a dataflow run of them (every send buffered, written here apart) gets stuck;
//   - a schedule left alone was sound.
// Each mutation class is its own test; the tags count what repair did.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <tuple>

#include "fuzz/mutant_gen.h"
#include "fuzz/property.h"
#include "fuzz/schedule_gen.h"
#include "fuzz/schedule_mutation.h"
#include "fuzz/schedule_truth.h"
#include "schedule/formats.h"
#include "schedule/generate.h"
#include "verify/repair.h"
#include "verify/repair_test_util.h"

namespace pipeproof {
namespace {

using testing::Computes;

// Whether the compute order can run at all: every rank takes its next compute once each pass it
// needs has been made somewhere (messages buffered, so no communication can do better).
bool ComputeOrderRuns(const Schedule& s) {
  const RouteIndex routes(s);
  std::vector<std::vector<Action>> computes = Computes(s);
  std::vector<size_t> next(s.ranks, 0);
  std::set<std::tuple<int, int, int>> made;
  for (bool moved = true; moved;) {
    moved = false;
    for (int r = 0; r < s.ranks; ++r) {
      while (next[r] < computes[r].size()) {
        const Action& a = computes[r][next[r]];
        bool ready = true;
        for (int t = 0; t < a.TaskCount() && ready; ++t) {
          if (!IsCompute(a.TaskAt(t).op)) continue;
          for (const PassKey& need : Needs(a.TaskAt(t), routes)) {
            ready = ready && made.count({static_cast<int>(need.pass), need.stage, need.microbatch});
          }
        }
        if (!ready) break;
        for (int t = 0; t < a.TaskCount(); ++t) {
          if (!IsCompute(a.TaskAt(t).op)) continue;
          for (const PassKey& key : Produces(a.TaskAt(t))) made.insert({static_cast<int>(key.pass), key.stage, key.microbatch});
        }
        ++next[r];
        moved = true;
      }
    }
  }
  for (int r = 0; r < s.ranks; ++r) {
    if (next[r] < computes[r].size()) return false;
  }
  return true;
}

// Sound in everything repair answers for (the memory bound is the compute order's own).
bool RunsSoundly(const truth::Verdict& v) {
  return v.structure && v.dependencies && v.matching && v.inputs && v.runs_to_end;
}

void CheckRepair(MutationClass c) {
  const auto [options, s, what] = GenMutant(c, 5);
  const CommModel model = AnyModel();
  const StreamLayout streams = AnyLayout();
  VerifyOptions verify;
  verify.model = model;
  verify.streams = streams;
  verify.use_z3 = false;  // the ground truth judges here
  const RepairResult r = Repair(s, verify);
  RC_LOG() << MutationClassName(c) << " of " << options.kind << " " << options.ranks << "x"
           << options.microbatches << ": " << what << " (" << CommModelName(model) << ", --streams "
           << StreamLayoutName(streams) << ")\n"
           << r.Text() << "\n" << WritePps(s) << "\nrepaired:\n" << WritePps(r.schedule);
  RC_TAG(std::string(RepairOutcomeName(r.outcome)) + (r.method.empty() ? "" : " (" + r.method + ")"));
  switch (r.outcome) {
    case RepairResult::Outcome::kAlreadySound:
      RC_ASSERT(RunsSoundly(truth::Judge(s, model, streams)));
      RC_ASSERT(r.edits.empty());
      break;
    case RepairResult::Outcome::kComputeCannotRun:
      RC_ASSERT(!truth::StructureHolds(ComputeOnly(s)) || !ComputeOrderRuns(s));
      break;
    case RepairResult::Outcome::kRepaired: {
      const truth::Verdict v = truth::Judge(r.schedule, model, streams);
      RC_LOG() << "ground truth of the repaired schedule: " << v.Describe() << "\n";
      RC_ASSERT(RunsSoundly(v));
      RC_ASSERT(Computes(r.schedule) == Computes(s));
      RC_ASSERT(r.relowered_edits == testing::RelowerEdits(s));
      RC_ASSERT(static_cast<int>(r.edits.size()) <= testing::RelowerEdits(s));
      RC_ASSERT(testing::ApplyEdits(s, r.edits).program == r.schedule.program);
      RC_ASSERT(!r.edits.empty());
      break;
    }
  }
}

#define REPAIR_FIXES(Name, Class) \
  PIPEPROOF_PROPERTY(RepairProperties, Name, ()) { CheckRepair(MutationClass::Class); }

REPAIR_FIXES(DropCompute, kDropCompute)
REPAIR_FIXES(DropComm, kDropComm)
REPAIR_FIXES(DropWait, kDropWait)
REPAIR_FIXES(DuplicateCompute, kDuplicateCompute)
REPAIR_FIXES(DuplicateComm, kDuplicateComm)
REPAIR_FIXES(SwapAdjacent, kSwapAdjacent)
REPAIR_FIXES(SwapAny, kSwapAny)
REPAIR_FIXES(SendMicrobatch, kSendMicrobatch)
REPAIR_FIXES(RecvMicrobatch, kRecvMicrobatch)
REPAIR_FIXES(CommAcrossWait, kCommAcrossWait)
REPAIR_FIXES(MoveWait, kMoveWait)
REPAIR_FIXES(ReverseGroup, kReverseGroup)
REPAIR_FIXES(SwapSendRecv, kSwapSendRecv)
REPAIR_FIXES(WrongRank, kWrongRank)
REPAIR_FIXES(IWithoutW, kIWithoutW)
REPAIR_FIXES(StripWaits, kStripWaits)
REPAIR_FIXES(StripAllWaits, kStripAllWaits)
REPAIR_FIXES(ShuffleRank, kShuffleRank)
REPAIR_FIXES(DropWaitSend, kDropWaitSend)
REPAIR_FIXES(DuplicateWaitSend, kDuplicateWaitSend)
REPAIR_FIXES(WaitSendBeforeSend, kWaitSendBeforeSend)
REPAIR_FIXES(WaitSendAfterSend, kWaitSendAfterSend)
REPAIR_FIXES(WaitSendInGroup, kWaitSendInGroup)

// A class added to the mutation library needs its line above.
TEST(RepairProperties, EveryClassHasAProperty) { EXPECT_EQ(AllMutationClasses().size(), 23u); }

// DualPipe and DualPipeV without any of their WAIT groups: repaired with no more edits than WAITs
// were removed.
PIPEPROOF_PROPERTY(RepairProperties, DualPipeWithoutWaitsTakesAtMostTheWaitsRemoved, ()) {
  GenerateOptions options = *GenValidOptions(4, 3);
  RC_PRE(options.kind == "dualpipe" || options.kind == "dualpipev");
  options.with_comm = true;
  Schedule s = Generate(options);
  int removed = 0;
  for (auto& program : s.program) removed += std::erase_if(program, [](const Action& a) { return a.op == Op::kWait; });
  VerifyOptions verify;
  verify.use_z3 = false;
  const RepairResult r = Repair(s, verify);
  RC_LOG() << options.kind << " " << options.ranks << "x" << options.microbatches << "\n" << r.Text();
  RC_ASSERT(RunsSoundly(truth::Judge(r.schedule, CommModel::kNccl)));
  RC_ASSERT(Computes(r.schedule) == Computes(s));
  RC_ASSERT(static_cast<int>(r.edits.size()) <= removed);
}

}  // namespace
}  // namespace pipeproof
