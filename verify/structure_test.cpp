// structure: shape, counts and placement; every later check is skipped when it fails.

#include <gtest/gtest.h>

#include <random>

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

TEST(Structure, SoundScheduleHasNoProblem) {
  const VerifyReport r = Check(kSound);
  EXPECT_TRUE(r.ok) << r.Text();
  EXPECT_EQ(r.checks.size(), 6u);
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

// Programs of random actions, most of them nonsense: the verifier reports, never crashes.
TEST(Structure, RandomProgramsNeverCrash) {
  std::mt19937 rng(99);
  const Op ops[] = {Op::kForward, Op::kBackward, Op::kInputGrad, Op::kWeightGrad, Op::kOverlapFB,
                    Op::kSendF,   Op::kRecvF,    Op::kSendB,     Op::kRecvB,      Op::kWait};
  for (int k = 0; k < 300; ++k) {
    Schedule s = testing::Generated(k % 2 ? "dualpipe" : "1f1b", 2, 4);
    for (auto& program : s.program) {
      program.resize(rng() % 12);
      for (Action& a : program) {
        const Op op = ops[rng() % 10];
        const int stage = static_cast<int>(rng() % (s.stages + 2)) - 1;
        const int mb = static_cast<int>(rng() % (s.microbatches + 2)) - 1;
        a = op == Op::kWait ? Action::Wait()
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

}  // namespace
}  // namespace pipeproof
