// Property suite 3: every mutation class is caught. A generated schedule (random kind and size;
// for the WAIT_SEND classes with PyTorch's WAIT_SENDs added) gets one mutation of the class at a
// random place and is judged under a random communication model and stream layout; whether the
// mutant is really broken is decided by fuzz/schedule_truth.h from docs/design.md's definitions (for
// deadlock: running the mutated program step by step), never by the verifier. The verifier must
// fail exactly the mutants the ground truth calls broken (none missed, no false alarm), and for
// classes that always break the same rule, fail that rule's check. Each class is its own test;
// the tags printed under each count its broken and harmless mutants.
#include <gtest/gtest.h>

#include <string>

#include "fuzz/mutant_gen.h"
#include "fuzz/property.h"
#include "fuzz/schedule_gen.h"
#include "fuzz/schedule_mutation.h"
#include "fuzz/schedule_truth.h"
#include "schedule/formats.h"
#include "verify/verify.h"

namespace pipeproof {
namespace {

void CheckMutantsAreCaught(MutationClass c) {
  const auto [options, s, what] = GenMutant(c, 6);
  const CommModel model = AnyModel();
  // A WAIT_SEND on a rank without WAITs can only hang a rank under the pair and edge layouts
  // (under one stream per rank what follows it waits behind its SEND anyway): draw all three.
  const StreamLayout streams = AnyLayout();
  const truth::Verdict truth = truth::Judge(s, model, streams);
  VerifyOptions verify;
  verify.model = model;
  verify.streams = streams;
  verify.use_z3 = false;  // suite 2 checks Z3 against the simulation
  const VerifyReport report = Verify(s, verify);
  RC_LOG() << MutationClassName(c) << " of " << options.kind << " " << options.ranks << "x"
           << options.microbatches << ": " << what << "\nground truth (" << CommModelName(model)
           << ", --streams " << StreamLayoutName(streams) << "): " << truth.Describe() << "\n"
           << report.Text() << "\n"
           << WritePps(s);
  RC_TAG(truth.sound() ? "harmless" : "broken");
  RC_ASSERT(report.ok == truth.sound());
  // The static rules are the same question on both sides.
  RC_ASSERT(report.Find("structure")->ok() == truth.structure);
  if (truth.structure) {
    RC_ASSERT(report.Find("dependencies")->ok() == truth.dependencies);
    RC_ASSERT(report.Find("matching")->ok() == truth.matching);
    RC_ASSERT(report.Find("memory")->ok() == truth.memory);
  }
  const std::string always = AlwaysFailingCheck(c);
  if (!always.empty()) {
    RC_ASSERT(!truth.sound());
    RC_ASSERT(!report.Find(always)->ok());
  }
}

#define MUTATION_CLASS_IS_CAUGHT(Name, Class) \
  PIPEPROOF_PROPERTY(MutationProperties, Name, ()) { CheckMutantsAreCaught(MutationClass::Class); }

MUTATION_CLASS_IS_CAUGHT(DropCompute, kDropCompute)
MUTATION_CLASS_IS_CAUGHT(DropComm, kDropComm)
MUTATION_CLASS_IS_CAUGHT(DropWait, kDropWait)
MUTATION_CLASS_IS_CAUGHT(DuplicateCompute, kDuplicateCompute)
MUTATION_CLASS_IS_CAUGHT(DuplicateComm, kDuplicateComm)
MUTATION_CLASS_IS_CAUGHT(SwapAdjacent, kSwapAdjacent)
MUTATION_CLASS_IS_CAUGHT(SwapAny, kSwapAny)
MUTATION_CLASS_IS_CAUGHT(SendMicrobatch, kSendMicrobatch)
MUTATION_CLASS_IS_CAUGHT(RecvMicrobatch, kRecvMicrobatch)
MUTATION_CLASS_IS_CAUGHT(CommAcrossWait, kCommAcrossWait)
MUTATION_CLASS_IS_CAUGHT(MoveWait, kMoveWait)
MUTATION_CLASS_IS_CAUGHT(ReverseGroup, kReverseGroup)
MUTATION_CLASS_IS_CAUGHT(SwapSendRecv, kSwapSendRecv)
MUTATION_CLASS_IS_CAUGHT(WrongRank, kWrongRank)
MUTATION_CLASS_IS_CAUGHT(IWithoutW, kIWithoutW)
MUTATION_CLASS_IS_CAUGHT(StripWaits, kStripWaits)
MUTATION_CLASS_IS_CAUGHT(StripAllWaits, kStripAllWaits)
MUTATION_CLASS_IS_CAUGHT(ShuffleRank, kShuffleRank)
MUTATION_CLASS_IS_CAUGHT(DropWaitSend, kDropWaitSend)
MUTATION_CLASS_IS_CAUGHT(DuplicateWaitSend, kDuplicateWaitSend)
MUTATION_CLASS_IS_CAUGHT(WaitSendBeforeSend, kWaitSendBeforeSend)
MUTATION_CLASS_IS_CAUGHT(WaitSendAfterSend, kWaitSendAfterSend)
MUTATION_CLASS_IS_CAUGHT(WaitSendInGroup, kWaitSendInGroup)

// Every class has a test above.
TEST(MutationProperties, EveryClassHasAProperty) { EXPECT_EQ(AllMutationClasses().size(), 23u); }

}  // namespace
}  // namespace pipeproof
