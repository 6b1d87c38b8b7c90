// dependencies: inputs computed, sent and received before the compute that needs them.

#include <gtest/gtest.h>

#include "verify/verify.h"
#include "verify/verify_test_util.h"

namespace pipeproof {
namespace {

using testing::FailedChecks;
using testing::Pps;

constexpr const char* kHeader = "ranks 2\nstages 2\nmicrobatches 2\n";

std::string DependencyFailure(const std::string& program) {
  const VerifyReport r = Verify(Pps(std::string(kHeader) + program), {});
  const CheckResult* c = r.Find("dependencies");
  EXPECT_FALSE(c->ok()) << r.Text();
  return c->message;
}

TEST(Dependencies, BackwardBeforeItsForward) {
  const std::string m = DependencyFailure(
      "rank 0: 0F0 0SEND_F0 0RECV_B0 0B0 0F1 0SEND_F1 0RECV_B1 0B1\n"
      "rank 1: 1RECV_F0 1B0 1F0 1SEND_B0 1RECV_F1 1F1 1B1 1SEND_B1\n");
  EXPECT_NE(m.find("rank 1 [1] 1B0 needs 1F0, which is computed later, at rank 1 [2] 1F0"),
            std::string::npos)
      << m;
}

TEST(Dependencies, ReceiveAfterTheComputeThatNeedsIt) {
  const std::string m = DependencyFailure(
      "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n"
      "rank 1: 1F0 1RECV_F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n");
  EXPECT_NE(m.find("rank 1 [0] 1F0 needs activation 0->1 mb 0 from rank 0, but rank 1 [1] "
                   "1RECV_F0 comes after it"),
            std::string::npos)
      << m;
}

TEST(Dependencies, ReceiveCompletedOnlyByALaterWait) {
  const std::string m = DependencyFailure(
      "rank 0: 0F0 0SEND_F0 WAIT 0F1 0SEND_F1 WAIT 0RECV_B0 WAIT 0B0 0RECV_B1 WAIT 0B1\n"
      "rank 1: 1RECV_F0 1F0 WAIT 1RECV_F1 WAIT 1F1 1B0 1SEND_B0 WAIT 1B1 1SEND_B1 WAIT\n");
  EXPECT_NE(m.find("rank 1 [1] 1F0 needs activation 0->1 mb 0 from rank 0, but rank 1 [0] "
                   "1RECV_F0 completes only at the WAIT at [2], after it"),
            std::string::npos)
      << m;
}

TEST(Dependencies, ReceiveAfterTheLastWait) {
  // Rank 1's last two SEND/RECVs follow its last WAIT: nothing completes (or even posts) them.
  const VerifyReport r =
      Verify(Pps(std::string(kHeader) +
                 "rank 0: 0F0 0SEND_F0 WAIT 0F1 0SEND_F1 0RECV_B0 WAIT 0B0 0RECV_B1 WAIT 0B1\n"
                 "rank 1: 1RECV_F0 WAIT 1F0 1B0 1SEND_B0 WAIT 1RECV_F1 1F1 1B1 1SEND_B1\n"),
             {});
  EXPECT_EQ(FailedChecks(r), (std::vector<std::string>{"dependencies", "deadlock"})) << r.Text();
  EXPECT_NE(r.Find("dependencies")
                ->message.find(
                    "rank 1 [7] 1F1 needs activation 0->1 mb 1 from rank 0, but no WAIT completes "
                    "rank 1 [6] 1RECV_F1 (it is after the rank's last WAIT)"),
            std::string::npos)
      << r.Text();
  ASSERT_EQ(r.cycle.size(), 1u) << r.Text();
  EXPECT_EQ(r.cycle[0].rank, 1);
  EXPECT_EQ(r.cycle[0].index, 6);
  EXPECT_NE(r.cycle[0].waits_for.find("is never posted"), std::string::npos);
}

TEST(Dependencies, SendBeforeItsPayloadIsComputed) {
  const std::string m = DependencyFailure(
      "rank 0: 0SEND_F0 0F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n"
      "rank 1: 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n");
  EXPECT_NE(m.find("rank 0 [0] 0SEND_F0 sends activation 0->1 mb 0 before it is computed, at "
                   "rank 0 [1] 0F0"),
            std::string::npos)
      << m;
}

TEST(Dependencies, TheMessageThatBringsAnInputIsSentTooEarly) {
  const VerifyReport early = Verify(
      Pps(std::string(kHeader) + "rank 0: 0SEND_F0 0F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n"
                                 "rank 1: 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n"),
      {});
  EXPECT_EQ(FailedChecks(early), std::vector<std::string>{"dependencies"}) << early.Text();
  EXPECT_NE(early.Text().find("rank 1 [1] 1F0 needs activation 0->1 mb 0 from rank 0, but the "
                              "message that brings it is sent at rank 0 [0] 0SEND_F0, before 0F0 "
                              "is computed at rank 0 [1] 0F0"),
            std::string::npos)
      << early.Text();
}

// Each check judges on its own: swapped SENDs are a mix-up (matching), and the first of them also
// sends mb 1 before 0F1 computes it (dependencies), whatever the RECV it meets expects.
TEST(Dependencies, SwappedSendsFailBothChecksOnTheirOwn) {
  const VerifyReport r = Verify(
      Pps(std::string(kHeader) + "rank 0: 0F0 0SEND_F1 0F1 0SEND_F0 0RECV_B0 0B0 0RECV_B1 0B1\n"
                                 "rank 1: 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n"),
      {});
  EXPECT_EQ(FailedChecks(r), (std::vector<std::string>{"dependencies", "matching"})) << r.Text();
  EXPECT_NE(r.Find("dependencies")->message.find("0SEND_F1 sends activation 0->1 mb 1 before it is computed"),
            std::string::npos)
      << r.Text();
}

// A mix-up whose SENDs each come after what they name is matching's alone to report.
TEST(Dependencies, AMixUpWithEverySendInTimeIsMatchingsAlone) {
  const VerifyReport r = Verify(
      Pps(std::string(kHeader) + "rank 0: 0F0 0F1 0SEND_F1 0SEND_F0 0RECV_B0 0B0 0RECV_B1 0B1\n"
                                 "rank 1: 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n"),
      {.use_z3 = false});
  EXPECT_EQ(FailedChecks(r), std::vector<std::string>{"matching"}) << r.Text();
}

TEST(Dependencies, GeneratedSchedulesHaveAllInputsInTime) {
  for (const std::string kind :
       {"gpipe", "1f1b", "interleaved-1f1b", "zb1p", "dualpipe", "dualpipev"}) {
    for (bool overlap : {true, false}) {
      const VerifyReport r = Verify(testing::Generated(kind, 4, 8, overlap), {.use_z3 = false});
      EXPECT_TRUE(r.Find("dependencies")->ok()) << kind << "\n" << r.Text();
    }
  }
}

}  // namespace
}  // namespace pipeproof
