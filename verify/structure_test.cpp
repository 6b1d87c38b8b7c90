// structure: shape, counts and placement; every later check is skipped when it fails.

#include <gtest/gtest.h>

#include <random>

#include "fuzz/schedule_truth.h"
#include "schedule/generate.h"
#include "verify/verify.h"
#include "verify/verify_test_util.h"

namespace pipeproof {
namespace {

using testing::FailedChecks;
using testing::Pps;

constexpr const char* kHeader = "ranks 2\nstages 2\nmicrobatches 2\n";
// GPipe-like, no WAITs: sound under both models.
constexpr const char* kSound =
    "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n"
    "rank 1: 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n";

VerifyReport Check(const std::string& program) {
  return Verify(Pps(std::string(kHeader) + program), {});
}

// The structure message of a schedule whose structure must fail, with the rest skipped.
std::string StructureFailure(const std::string& program) {
  const VerifyReport r = Check(program);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(FailedChecks(r), std::vector<std::string>{"structure"}) << r.Text();
  for (const CheckResult& c : r.checks) {
    if (c.name != "structure") {
      EXPECT_TRUE(c.skipped()) << c.name;
    }
  }
  return r.Find("structure")->message;
}

// A large schedule's messages are matched beside the structure check, before anything is known
// of its actions: SEND/RECVs naming stages and microbatches far out of range, on any rank, must
// leave the structure failing and the rest skipped, nothing read or written out of bounds.
TEST(Structure, WildMessagesInALargeScheduleAreReportedNotFollowed) {
  Schedule s = Generate({.kind = "1f1b", .ranks = 4, .microbatches = 8000});
  ASSERT_GE(s.ActionCount(), 20000);  // large enough to be matched beside the structure check
  const Action wild[] = {Action::Comm(Op::kSendF, -7, 0), Action::Comm(Op::kRecvF, 1 << 30, 3),
                         Action::Comm(Op::kSendB, 2, -1), Action::Comm(Op::kRecvB, 3, 1 << 30),
                         Action::Comm(Op::kSendF, 3, 5)};  // the last stage: nothing to send to
  for (int k = 0; k < 5; ++k) s.program[k % 4][100 * k + 7] = wild[k];
  const VerifyReport r = Verify(s, {.use_z3 = false});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(FailedChecks(r), std::vector<std::string>{"structure"}) << r.Text();
  EXPECT_NE(r.Find("structure")->message.find("5 problems"), std::string::npos) << r.Text();
}

TEST(Structure, SoundScheduleHasNoProblem) {
  const VerifyReport r = Check(kSound);
  EXPECT_TRUE(r.ok) << r.Text();
  EXPECT_EQ(r.checks.size(), 6u);
}

// A forward-only pass: one F per stage and microbatch, no backward, no activations kept.
TEST(Structure, AForwardOnlyPassNeedsOneForwardAndNoBackward) {
  const std::string header = "pass forward\nranks 2\nstages 2\nmicrobatches 1\n";
  const VerifyReport r = Verify(Pps(header + "rank 0: 0F0 0SEND_F0\nrank 1: 1RECV_F0 1F0\n"), {});
  EXPECT_TRUE(r.ok) << r.Text();
  EXPECT_EQ(r.memory.peak, (std::vector<int>{0, 0}));
  const VerifyReport backward = Verify(Pps(header + "rank 0: 0F0 0SEND_F0\nrank 1: 1RECV_F0 1F0 1B0\n"), {});
  EXPECT_FALSE(backward.Find("structure")->ok());
  EXPECT_NE(backward.Find("structure")->message.find("a backward (B, I or W)"), std::string::npos)
      << backward.Text();
  const VerifyReport missing = Verify(Pps(header + "rank 0: 0F0 0SEND_F0\nrank 1: 1RECV_F0\n"), {});
  EXPECT_NE(missing.Find("structure")->message.find("stage 1 microbatch 0: no task at all"), std::string::npos)
      << missing.Text();
  // The control: without the mark, the same program misses its backwards.
  EXPECT_FALSE(Verify(Pps("ranks 2\nstages 2\nmicrobatches 1\nrank 0: 0F0 0SEND_F0\nrank 1: 1RECV_F0 1F0\n"), {})
                   .Find("structure")
                   ->ok());
}

TEST(Structure, MicrobatchOutOfRange) {
  EXPECT_NE(StructureFailure("rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1 0F7\n"
                             "rank 1: 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n")
                .find("microbatch 7 is out of range 0..1"),
            std::string::npos);
}

TEST(Structure, StageOutOfRange) {
  EXPECT_NE(StructureFailure("rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1 5W0\n"
                             "rank 1: 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n")
                .find("stage 5 is out of range"),
            std::string::npos);
}

TEST(Structure, ActionOnTheWrongRank) {
  const std::string m = StructureFailure(
      "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1 1SEND_B1\n"
      "rank 1: 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1\n");
  EXPECT_NE(m.find("stage 1 is placed on rank 1, not rank 0"), std::string::npos) << m;
}

TEST(Structure, DuplicateForward) {
  const std::string m = StructureFailure(
      "rank 0: 0F0 0SEND_F0 0F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n"
      "rank 1: 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n");
  EXPECT_NE(m.find("stage 0 microbatch 0: 2 F"), std::string::npos) << m;
}

TEST(Structure, MissingBackward) {
  const std::string m = StructureFailure(
      "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1\n"
      "rank 1: 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n");
  EXPECT_NE(m.find("stage 0 microbatch 1: no backward"), std::string::npos) << m;
}

TEST(Structure, InputGradientWithoutWeightGradient) {
  const std::string m = StructureFailure(
      "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0I0 0RECV_B1 0B1\n"
      "rank 1: 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n");
  EXPECT_NE(m.find("1 I without W"), std::string::npos) << m;
}

TEST(Structure, WeightGradientWithoutInputGradient) {
  const std::string m = StructureFailure(
      "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0W0 0RECV_B1 0B1\n"
      "rank 1: 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n");
  EXPECT_NE(m.find("both B and I/W"), std::string::npos) << m;
}

TEST(Structure, SendPastTheEndOfTheRoute) {
  const std::string m = StructureFailure(
      "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n"
      "rank 1: 1RECV_F0 1F0 1SEND_F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n");
  EXPECT_NE(m.find("stage 1 is the last stage of microbatch 0's route, so there is nothing to "
                   "send"),
            std::string::npos)
      << m;
}

TEST(Structure, MessageWithinOneRank) {
  // DualPipeV's turn: stages 1 and 2 both live on rank 1, so 1SEND_F0 needs no message.
  Schedule s = testing::Generated("dualpipev", 2, 4);
  s.program[1].insert(s.program[1].begin(), Action::Comm(Op::kSendF, 1, 0));
  const VerifyReport r = Verify(s, {});
  EXPECT_EQ(FailedChecks(r), std::vector<std::string>{"structure"});
  EXPECT_NE(r.Find("structure")->message.find("stays on rank 1"), std::string::npos) << r.Text();
}

TEST(Structure, ManyProblemsAreCountedAndTheFirstKept) {
  Schedule s = testing::Generated("1f1b", 2, 8);
  for (auto& program : s.program)
    std::erase_if(program, [](const Action& a) { return a.op == Op::kBackward; });
  const VerifyReport r = Verify(s, {});
  EXPECT_NE(r.Find("structure")->message.find("16 problems, the first:"), std::string::npos)
      << r.Text();
  EXPECT_NE(r.Text().find("... and 4 more"), std::string::npos) << r.Text();
}

TEST(Structure, BrokenTopologyIsBadInput) {
  Schedule s = testing::Generated("1f1b", 2, 2);
  s.placement.resize(1);
  EXPECT_THROW(Verify(s, {}), InputError);
  Schedule t = testing::Generated("1f1b", 2, 2);
  t.program.resize(3);
  EXPECT_THROW(Verify(t, {}), InputError);
}

TEST(Structure, EmptyScheduleFails) {
  const VerifyReport r = Check("rank 0:\nrank 1:\n");
  EXPECT_EQ(FailedChecks(r), std::vector<std::string>{"structure"});
}

// ---- PyTorch's runtime actions (WAIT_SEND, UNSHARD, RESHARD, REDUCE_GRAD, WAIT_REDUCE_GRAD):
// each order rule broken once, on kSound's schedule. Each message names the action where the
// rule breaks (rank, position, action as written) and the rule, so that a user can find it in a
// file of thousands of actions.

constexpr const char* kRank1 = "rank 1: 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n";

TEST(StructureRuntime, WaitSendBeforeItsSend) {
  EXPECT_EQ(StructureFailure("rank 0: 0F0 0WAIT_SEND_F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 "
                             "0RECV_B1 0B1\n" +
                             std::string(kRank1)),
            "rank 0 [1] 0WAIT_SEND_F0: waits for 0SEND_F0, which rank 0 does not write before it");
}

TEST(StructureRuntime, WaitSendOfTheOtherDirection) {
  // A WAIT_SEND_F waits for a SEND_F: rank 1's SEND_B of the same stage and microbatch is not it.
  EXPECT_EQ(StructureFailure("rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n"
                             "rank 1: 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1WAIT_SEND_F0 1B1 "
                             "1SEND_B1\n"),
            "rank 1 [6] 1WAIT_SEND_F0: waits for 1SEND_F0, which rank 1 does not write before it");
}

TEST(StructureRuntime, SecondWaitForOneSend) {
  EXPECT_EQ(StructureFailure("rank 0: 0F0 0SEND_F0 0WAIT_SEND_F0 0F1 0SEND_F1 0WAIT_SEND_F0 "
                             "0RECV_B0 0B0 0RECV_B1 0B1\n" +
                             std::string(kRank1)),
            "rank 0 [5] 0WAIT_SEND_F0: a second wait for 0SEND_F0 (the first is at [2])");
}

TEST(StructureRuntime, WaitSendOnAnotherRankThanItsSend) {
  // Rank 1 never sends stage 0's output: the WAIT_SEND is on the wrong rank, which says so.
  const std::string m = StructureFailure(
      "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n"
      "rank 1: 1RECV_F0 1F0 0WAIT_SEND_F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 "
      "1SEND_B1\n");
  EXPECT_EQ(m, "rank 1 [2] 0WAIT_SEND_F0: stage 0 is placed on rank 0, not rank 1");
}

TEST(StructureRuntime, ComputeBeforeTheStagesUnshard) {
  // A stage with an UNSHARD anywhere starts sharded: its first compute must follow it.
  EXPECT_EQ(StructureFailure("rank 0: 0F0 0UNSHARD 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 "
                             "0B1\n" +
                             std::string(kRank1)),
            "rank 0 [0] 0F0: computes on stage 0 before its UNSHARD");
}

TEST(StructureRuntime, ComputeAfterTheStagesReshard) {
  // Stage 1 has no UNSHARD, so it starts gathered; its RESHARD drops the parameters for good.
  EXPECT_EQ(StructureFailure("rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n"
                             "rank 1: 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1RESHARD 1B1 "
                             "1SEND_B1\n"),
            "rank 1 [7] 1B1: computes on stage 1 after its RESHARD at [6] and before another "
            "UNSHARD");
}

TEST(StructureRuntime, UnshardOfGatheredParameters) {
  EXPECT_EQ(StructureFailure("rank 0: 0UNSHARD 0UNSHARD 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 "
                             "0RECV_B1 0B1\n" +
                             std::string(kRank1)),
            "rank 0 [1] 0UNSHARD: stage 0's parameters are already gathered by the UNSHARD at [0]");
}

TEST(StructureRuntime, ReshardOfShardedParameters) {
  // Before the stage's UNSHARD its parameters are sharded (it has one), so there is nothing to
  // drop; the same after a RESHARD.
  EXPECT_EQ(StructureFailure("rank 0: 0RESHARD 0UNSHARD 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 "
                             "0RECV_B1 0B1\n" +
                             std::string(kRank1)),
            "rank 0 [0] 0RESHARD: stage 0's parameters are not gathered here");
  EXPECT_EQ(StructureFailure("rank 0: 0UNSHARD 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 "
                             "0B1 0RESHARD 0RESHARD\n" +
                             std::string(kRank1)),
            "rank 0 [10] 0RESHARD: stage 0's parameters are not gathered here");
}

TEST(StructureRuntime, ComputeAfterTheStagesReduceGrad) {
  EXPECT_EQ(StructureFailure("rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0REDUCE_GRAD "
                             "0WAIT_REDUCE_GRAD 0RECV_B1 0B1\n" +
                             std::string(kRank1)),
            "rank 0 [9] 0B1: computes on stage 0 after its REDUCE_GRAD at [6], which must follow "
            "the stage's last compute");
}

TEST(StructureRuntime, SecondReduceGradOfAStage) {
  EXPECT_EQ(StructureFailure("rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1 "
                             "0REDUCE_GRAD 0WAIT_REDUCE_GRAD 0REDUCE_GRAD 0WAIT_REDUCE_GRAD\n" +
                             std::string(kRank1)),
            "rank 0 [10] 0REDUCE_GRAD: a second REDUCE_GRAD of stage 0 (the first is at [8])");
}

TEST(StructureRuntime, TwoReductionsPendingOnOneRank) {
  // Rank 0 holds stages 0 and 2 (loop placement): stage 2's reduction starts before stage 0's
  // has been waited for. The WAIT_REDUCE_GRAD of stage 0 then finds stage 2's pending instead.
  const VerifyReport r =
      Verify(Pps("ranks 2\nstages 4\nmicrobatches 1\nplacement loop\n"
                 "rank 0: 0F0 0SEND_F0 2RECV_F0 2F0 2SEND_F0 2RECV_B0 2B0 2SEND_B0 0RECV_B0 0B0 "
                 "0REDUCE_GRAD 2REDUCE_GRAD 0WAIT_REDUCE_GRAD 2WAIT_REDUCE_GRAD\n"
                 "rank 1: 1RECV_F0 1F0 1SEND_F0 3RECV_F0 3F0 3B0 3SEND_B0 1RECV_B0 1B0 "
                 "1SEND_B0\n"),
             {});
  EXPECT_EQ(FailedChecks(r), std::vector<std::string>{"structure"}) << r.Text();
  EXPECT_EQ(r.Find("structure")->message,
            "2 problems, the first: rank 0 [11] 2REDUCE_GRAD: the reduction at [10] is not "
            "waited for yet, and PyTorch's runtime keeps at most one pending per rank");
  EXPECT_EQ(r.Find("structure")->details.at(1),
            "rank 0 [12] 0WAIT_REDUCE_GRAD: no REDUCE_GRAD of stage 0 is pending here");
}

TEST(StructureRuntime, WaitReduceGradWithNothingPending) {
  EXPECT_EQ(StructureFailure("rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1 "
                             "0WAIT_REDUCE_GRAD\n" +
                             std::string(kRank1)),
            "rank 0 [8] 0WAIT_REDUCE_GRAD: no REDUCE_GRAD of stage 0 is pending here");
}

TEST(StructureRuntime, ReductionLeftPendingAtTheEnd) {
  EXPECT_EQ(StructureFailure("rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1 "
                             "0REDUCE_GRAD\n" +
                             std::string(kRank1)),
            "rank 0 [8] 0REDUCE_GRAD: never waited for (no WAIT_REDUCE_GRAD of the stage after "
            "it)");
}

TEST(StructureRuntime, DataParallelActionOutOfRange) {
  EXPECT_EQ(StructureFailure("rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1 "
                             "5RESHARD\n" +
                             std::string(kRank1)),
            "rank 0 [8] 5RESHARD: stage 5 is out of range 0..1");
}

TEST(StructureRuntime, DataParallelActionOnAnotherRank) {
  const std::string m = StructureFailure(
      "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1 1REDUCE_GRAD\n" +
      std::string(kRank1));
  EXPECT_EQ(m, "rank 0 [8] 1REDUCE_GRAD: stage 1 is placed on rank 1, not rank 0");
}

// Every runtime action in an order PyTorch's runtime accepts: stage 0 gathered for its forwards,
// dropped, gathered again for its backwards (FSDP's reshard after forward); each SEND waited for
// once, the forward sends after their backwards (PyTorch's _add_wait_send), the backward sends
// at the end; one reduction per stage, waited for before the next and before the step ends.
TEST(StructureRuntime, EveryRuntimeActionInAValidOrder) {
  const std::string program =
      "rank 0: 0UNSHARD 0F0 0SEND_F0 0F1 0SEND_F1 0RESHARD 0RECV_B0 0UNSHARD 0B0 0WAIT_SEND_F0 "
      "0RECV_B1 0B1 0WAIT_SEND_F1 0REDUCE_GRAD 0RESHARD 0WAIT_REDUCE_GRAD\n"
      "rank 1: 1UNSHARD 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1 1REDUCE_GRAD "
      "1WAIT_REDUCE_GRAD 1RESHARD 1WAIT_SEND_B0 1WAIT_SEND_B1\n";
  const Schedule s = Pps(std::string(kHeader) + program);
  EXPECT_TRUE(truth::StructureHolds(s));
  for (StreamLayout streams : kStreamLayouts) {
    const VerifyReport r = Verify(s, {.streams = streams, .use_z3 = false});
    EXPECT_TRUE(r.ok) << StreamLayoutName(streams) << "\n" << r.Text();
    EXPECT_EQ(FailedChecks(r), std::vector<std::string>{});
  }
  // A RESHARD may stand between a REDUCE_GRAD and its wait: only computes are held to the
  // gathered window and to before the reduction.
  const VerifyReport late = Check(
      "rank 0: 0UNSHARD 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1 0REDUCE_GRAD 0RESHARD "
      "0WAIT_REDUCE_GRAD\n" +
      std::string(kRank1));
  EXPECT_TRUE(late.ok) << late.Text();
}

// Programs of random actions, most of them nonsense: the verifier reports, never crashes.
TEST(Structure, RandomProgramsNeverCrash) {
  std::mt19937 rng(99);
  const Op ops[] = {Op::kForward,   Op::kBackward, Op::kInputGrad,  Op::kWeightGrad,
                    Op::kOverlapFB, Op::kSendF,    Op::kRecvF,      Op::kSendB,
                    Op::kRecvB,     Op::kWait,     Op::kWaitSendF,  Op::kWaitSendB,
                    Op::kUnshard,   Op::kReshard,  Op::kReduceGrad, Op::kWaitReduceGrad};
  for (int k = 0; k < 300; ++k) {
    Schedule s = testing::Generated(k % 2 ? "dualpipe" : "1f1b", 2, 4);
    for (auto& program : s.program) {
      program.resize(rng() % 12);
      for (Action& a : program) {
        const Op op = ops[rng() % std::size(ops)];
        const int stage = static_cast<int>(rng() % (s.stages + 2)) - 1;
        const int mb = static_cast<int>(rng() % (s.microbatches + 2)) - 1;
        a = op == Op::kWait      ? Action::Wait()
            : IsDataParallel(op) ? Action::DataParallel(op, stage)
            : op == Op::kOverlapFB
                ? Action::OverlapFB(stage, mb, rng() % 2 ? Op::kBackward : Op::kInputGrad,
                                    static_cast<int>(rng() % s.stages), mb)
                : Action{op, stage, mb, {}};
      }
    }
    const VerifyReport r = Verify(s, {.use_z3 = k % 10 == 0});
    EXPECT_FALSE(r.ok);
    EXPECT_FALSE(r.Text().empty());
    EXPECT_FALSE(r.Json().empty());
  }
}

// A microbatch the header counts but no rank names is reported as missing, with the hint that a
// file without a header counts its microbatches from the largest it names.
TEST(Structure, AMicrobatchWithNoTaskAtAllSaysHowTheyAreCounted) {
  const VerifyReport r = Verify(
      Pps("ranks 2\nstages 2\nmicrobatches 3\n"
          "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n"
          "rank 1: 1RECV_F0 1F0 1B0 1SEND_B0 1RECV_F1 1F1 1B1 1SEND_B1\n"),
      {.use_z3 = false});
  EXPECT_EQ(FailedChecks(r), std::vector<std::string>{"structure"}) << r.Text();
  EXPECT_NE(r.Text().find("stage 0 microbatch 2: no task at all (the schedule has microbatches "
                          "0..2"),
            std::string::npos)
      << r.Text();
}

}  // namespace
}  // namespace pipeproof
