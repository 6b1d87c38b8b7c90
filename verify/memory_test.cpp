// memory: peak live activations per rank in stage-chunks, against the kind's bound or a given one.

#include <gtest/gtest.h>

#include "fuzz/schedule_truth.h"
#include "schedule/generate.h"
#include "verify/verify.h"
#include "verify/verify_test_util.h"

namespace pipeproof {
namespace {

using testing::Generated;

TEST(Memory, GeneratedSchedulesStayWithinTheirKindsBound) {
  const std::vector<std::tuple<std::string, int, int>> sizes = {
      {"dualpipe", 2, 4},        {"dualpipe", 4, 8},  {"dualpipe", 6, 24},
      {"dualpipe", 8, 16},       {"dualpipev", 1, 2}, {"dualpipev", 3, 6},
      {"dualpipev", 4, 9},       {"1f1b", 4, 2},      {"1f1b", 4, 9},
      {"zb1p", 5, 10},           {"gpipe", 3, 5},     {"interleaved-1f1b", 2, 4},
      {"interleaved-1f1b", 4, 8}};
  for (const auto& [kind, r, m] : sizes) {
    for (bool overlap : {true, false}) {
      const Schedule s = Generated(kind, r, m, overlap);
      const VerifyReport report = Verify(s, {.use_z3 = false});
      ASSERT_TRUE(report.Find("memory")->ok()) << kind << " " << r << "x" << m << "\n"
                                               << report.Text();
      ASSERT_TRUE(report.memory.bound.has_value());
      EXPECT_EQ(*report.memory.bound, truth::KindBound(s));
      const int peak = *std::max_element(report.memory.peak.begin(), report.memory.peak.end());
      EXPECT_EQ(peak, truth::PeakActivations(s)) << kind;
      // DualPipe's bound is tight: some rank holds S_route + 1 chunks (once the pipe is full).
      if (kind == "dualpipe" && m >= 2 * r) {
        EXPECT_EQ(peak, r + 1) << kind << " " << r;
      }
    }
  }
}

TEST(Memory, PeakPositionAndStash) {
  const Schedule s = Generated("zb1p", 3, 6);
  const VerifyReport r = Verify(s, {.use_z3 = false});
  ASSERT_EQ(r.memory.peak.size(), 3u);
  // ZB-H1: rank r holds R - r forwards at the end of its warm-up, and defers r weight gradients.
  for (int rank = 0; rank < 3; ++rank) {
    EXPECT_EQ(r.memory.peak[rank], 3 - rank);
    const Action& at = s.program[rank][r.memory.peak_index[rank]];
    EXPECT_EQ(at.op, Op::kForward) << ToString(at);
  }
  EXPECT_EQ(r.memory.stash_peak, (std::vector<int>{1, 2, 3}));
}

TEST(Memory, GivenBoundIsChecked) {
  const Schedule s = Generated("dualpipe", 4, 8);
  const VerifyReport tight = Verify(s, {.use_z3 = false, .max_activations = 4});
  EXPECT_EQ(testing::FailedChecks(tight), std::vector<std::string>{"memory"});
  EXPECT_NE(tight.Find("memory")->message.find("exceeds the bound 4 (--max-activations) on 4 "
                                               "ranks"),
            std::string::npos)
      << tight.Text();
  EXPECT_TRUE(Verify(s, {.use_z3 = false, .max_activations = 5}).ok);
  EXPECT_THROW(Verify(s, {.max_activations = -1}), InputError);
}

TEST(Memory, MovingForwardsEarlierBreaksTheBound) {
  // 1F1B's rank 0 runs every forward first: GPipe's memory, more than R chunks.
  Schedule s = Generated("1f1b", 3, 6);
  std::stable_partition(s.program[0].begin(), s.program[0].end(),
                        [](const Action& a) { return a.op == Op::kForward || a.op == Op::kSendF; });
  const VerifyReport r = Verify(s, {.use_z3 = false});
  EXPECT_FALSE(r.Find("memory")->ok()) << r.Text();
  EXPECT_EQ(r.memory.peak[0], 6);
}

TEST(Memory, UnknownKindHasNoBound) {
  Schedule s = Generated("1f1b", 2, 4);
  s.kind.clear();
  const VerifyReport r = Verify(s, {.use_z3 = false});
  EXPECT_TRUE(r.Find("memory")->ok());
  EXPECT_FALSE(r.memory.bound.has_value());
  EXPECT_NE(r.Find("memory")->message.find("no bound"), std::string::npos);
}

}  // namespace
}  // namespace pipeproof
