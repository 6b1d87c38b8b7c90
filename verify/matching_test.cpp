// matching: FIFO pairing per ordered rank pair, the mix-up report, leftovers.

#include <gtest/gtest.h>

#include "verify/verify.h"
#include "verify/verify_test_util.h"

namespace pipeproof {
namespace {

using testing::FailedChecks;
using testing::Pps;

constexpr const char* kHeader = "ranks 2\nstages 2\nmicrobatches 2\n";

TEST(Matching, SwappedSendsAreAMixUp) {
  // Rank 0 sends microbatch 1's activation first; rank 1 expects microbatch 0's first. Both
  // activations exist before either send, so only the payloads disagree.
  const VerifyReport r = Verify(
      Pps(std::string(kHeader) + "rank 0: 0F0 0F1 0SEND_F1 0SEND_F0 0RECV_B0 0B0 0RECV_B1 0B1\n"
                                 "rank 1: 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n"),
      {});
  EXPECT_EQ(FailedChecks(r), std::vector<std::string>{"matching"}) << r.Text();
  const std::string& m = r.Find("matching")->message;
  EXPECT_NE(m.find("2 problems"), std::string::npos) << m;
  EXPECT_NE(m.find("mix-up: rank 0 [2] 0SEND_F1 sends activation 0->1 mb 1, but the receive it "
                   "meets, rank 1 [0] 1RECV_F0, expects activation 0->1 mb 0"),
            std::string::npos)
      << m;
}

TEST(Matching, WrongMicrobatchInARecvIsAMixUpOnly) {
  // With WAIT groups the data is there (the message arrives before the compute), so only the
  // labels disagree: a silent mix-up, nothing else.
  Schedule s = testing::Generated("dualpipe", 2, 4);
  for (Action& a : s.program[1]) {
    if (a.op == Op::kRecvF && a.microbatch == 0) {
      a.microbatch = 1;
      break;
    }
  }
  const VerifyReport r = Verify(s, {});
  EXPECT_EQ(FailedChecks(r), std::vector<std::string>{"matching"}) << r.Text();
  EXPECT_NE(r.Find("matching")->message.find("expects activation 0->1 mb 1"), std::string::npos);
}

TEST(Matching, LeftoverSendAndRecv) {
  const VerifyReport r =
      Verify(Pps(std::string(kHeader) +
                 "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1 0RECV_B1\n"
                 "rank 1: 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n"),
             {});
  const CheckResult* m = r.Find("matching");
  EXPECT_FALSE(m->ok());
  EXPECT_NE(m->message.find("rank 0 [8] 0RECV_B1 (gradient 1->0 mb 1) is left over: rank 1 has "
                            "no matching SEND to rank 0"),
            std::string::npos)
      << m->message;
  // The receive that never completes is also a deadlock, explained as such.
  ASSERT_FALSE(r.Find("deadlock")->ok());
  ASSERT_EQ(r.cycle.size(), 1u);
  EXPECT_EQ(r.cycle[0].index, 8);
  EXPECT_NE(r.cycle[0].waits_for.find("meets no SEND on rank 1 (see matching)"), std::string::npos);
}

TEST(Matching, GeneratedSchedulesMatch) {
  for (const std::string kind :
       {"gpipe", "1f1b", "interleaved-1f1b", "zb1p", "dualpipe", "dualpipev"}) {
    const VerifyReport r = Verify(testing::Generated(kind, 4, 8), {.use_z3 = false});
    EXPECT_TRUE(r.Find("matching")->ok()) << kind << "\n" << r.Text();
  }
}

}  // namespace
}  // namespace pipeproof
