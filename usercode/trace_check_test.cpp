#include "usercode/trace_check.h"

#include <gtest/gtest.h>

#include "schedule/formats.h"
#include "usercode/trace_test_util.h"
#include "verify/verify.h"

namespace pipeproof {
namespace {

using testing::Recv;
using testing::Send;
using testing::TraceBuilder;

bool Has(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

// Two ranks ping-ponging: rank 0 sends, rank 1 answers, twice.
std::vector<Trace> PingPong() {
  return {
      TraceBuilder(0, 2).Unit({Send(1)}).Unit({Recv(1)}).Unit({Send(1, 32), Recv(1, 32)}).Build(),
      TraceBuilder(1, 2).Unit({Recv(0)}).Unit({Send(0)}).Unit({Recv(0, 32), Send(0, 32)}).Build()};
}

TEST(TraceCheckTest, MatchingRunIsClean) {
  const TraceCheckReport r = CheckTraces(PingPong());
  EXPECT_TRUE(r.ok()) << r.Text();
  EXPECT_EQ(r.matched, 4);
  EXPECT_EQ(r.calls, 8);
  EXPECT_TRUE(Has(r.Text(), "every send meets a receive of the same count and type")) << r.Text();
  EXPECT_TRUE(Has(r.Json(), "\"ok\": true"));
}

TEST(TraceCheckTest, SizeMismatchNamesBothCalls) {
  const std::vector<Trace> t = {TraceBuilder(0, 2).Unit({Send(1, 100)}).Build(),
                                TraceBuilder(1, 2).Unit({Recv(0, 200)}).Build()};
  const TraceCheckReport r = CheckTraces(t);
  ASSERT_EQ(r.problems.size(), 1u) << r.Text();
  EXPECT_EQ(r.problems[0].kind, TraceProblem::Kind::kMismatch);
  EXPECT_EQ(r.problems[0].call, (CallRef{0, 0}));
  EXPECT_EQ(r.problems[0].partner, (CallRef{1, 0}));
  EXPECT_TRUE(Has(r.problems[0].message, "count 100 sent, 200 expected")) << r.Text();
}

TEST(TraceCheckTest, SwappedSendsAreRecognized) {
  const std::vector<Trace> t = {
      TraceBuilder(0, 2).Unit({Send(1, 65)}).Unit({Send(1, 64)}).Unit({Send(1, 66)}).Build(),
      TraceBuilder(1, 2).Unit({Recv(0, 64)}).Unit({Recv(0, 65)}).Unit({Recv(0, 66)}).Build()};
  const TraceCheckReport r = CheckTraces(t);
  ASSERT_EQ(r.problems.size(), 1u) << r.Text();
  EXPECT_TRUE(Has(r.Text(), "messages #0 and #1 are swapped")) << r.Text();
  EXPECT_FALSE(r.hang);
}

TEST(TraceCheckTest, MissingReceiveIsRecognizedAndTheHangPointsAtIt) {
  // Rank 1 skips the receive of the 64-element message: its receives meet the sends one later,
  // and rank 0's last send waits for a receive that rank 1, finished, never makes.
  const std::vector<Trace> t = {
      TraceBuilder(0, 2)
          .Unit({Send(1, 64)})
          .Unit({Send(1, 65)})
          .Unit({Send(1, 66)}, /*completed=*/false)
          .OnSignal(15)
          .Build(),
      TraceBuilder(1, 2).Unit({Recv(0, 65)}).Unit({Recv(0, 66)}).OnSignal(15).Build()};
  const TraceCheckReport r = CheckTraces(t);
  EXPECT_FALSE(r.ok());
  const std::string text = r.Text();
  EXPECT_TRUE(Has(text, "rank 1 is missing a receive for message #0")) << text;
  EXPECT_TRUE(Has(text, "1 send has no receive: rank 0 call #2")) << text;
  ASSERT_TRUE(r.hang);
  EXPECT_TRUE(r.hang->cycle.empty());
  EXPECT_TRUE(Has(text, "rank 1 never makes the ncclRecv it meets")) << text;
}

TEST(TraceCheckTest, CrossIsTheCycleAndTheDivergence) {
  // After one message each way, both ranks send in a group of their own before receiving.
  const std::vector<Trace> t = {TraceBuilder(0, 2)
                                    .Unit({Send(1)})
                                    .Unit({Recv(1)})
                                    .Unit({Send(1, 65)}, false)
                                    .OnSignal(15)
                                    .Build(),
                                TraceBuilder(1, 2)
                                    .Unit({Recv(0)})
                                    .Unit({Send(0)})
                                    .Unit({Send(0, 66)}, false)
                                    .OnSignal(15)
                                    .Build()};
  const TraceCheckReport r = CheckTraces(t);
  ASSERT_TRUE(r.hang) << r.Text();
  EXPECT_EQ(r.hang->headline, "ranks 0 and 1 wait for each other: a cross");
  ASSERT_EQ(r.hang->cycle.size(), 2u);
  EXPECT_EQ(r.hang->cycle[0].call, (CallRef{0, 2}));
  EXPECT_EQ(r.hang->cycle[0].waits_for_rank, 1);
  EXPECT_EQ(r.hang->cycle[1].call, (CallRef{1, 2}));
  const std::string text = r.Text();
  EXPECT_TRUE(
      Has(text, "diverge at rank 0's group #2 and rank 1's group #2 (the 3rd of their groups"))
      << text;
  EXPECT_TRUE(Has(text, "each rank sends to the other before it receives, in separate groups"))
      << text;
  // The calls a hang left open are the hang's, not matching problems.
  EXPECT_TRUE(r.problems.empty()) << text;
}

TEST(TraceCheckTest, SplitCommunicatorRanksAreMappedToTraces) {
  // The communicator numbers the ranks the other way round: peer 0 of rank 1 is rank 1 itself's
  // partner rank 0 only through the mapping.
  const std::vector<Trace> t = {
      TraceBuilder(0, 2, 0xABC, /*comm_rank=*/1).Unit({Send(0, 8)}).Build(),
      TraceBuilder(1, 2, 0xABC, /*comm_rank=*/0).Unit({Recv(1, 8)}).Build()};
  const TraceCheckReport r = CheckTraces(t);
  EXPECT_TRUE(r.ok()) << r.Text();
  EXPECT_EQ(r.matched, 1);
}

TEST(TraceCheckTest, MissingTraceIsReported) {
  const std::vector<Trace> t = {TraceBuilder(0, 3).Unit({Send(1)}).Unit({Send(2)}).Build(),
                                TraceBuilder(1, 3).Unit({Recv(0)}).Build()};
  const TraceCheckReport r = CheckTraces(t);
  ASSERT_EQ(r.problems.size(), 1u) << r.Text();
  EXPECT_EQ(r.problems[0].kind, TraceProblem::Kind::kMissingTrace);
  EXPECT_TRUE(Has(r.problems[0].message, "rank 2 of communicator")) << r.Text();
}

Schedule ScheduleOf(const std::vector<Trace>& t) { return ScheduleFromTraces(t).schedule; }

TEST(TraceCheckTest, SchedulesPassStructureAndDecideDeadlock) {
  VerifyOptions options;
  options.model = CommModel::kNccl;
  // A clean trace is a forward-only program that verifies as a whole, written and read back.
  const Schedule clean_schedule = ScheduleOf(PingPong());
  EXPECT_TRUE(clean_schedule.forward_only);
  const VerifyReport clean = Verify(clean_schedule, options);
  EXPECT_TRUE(clean.ok) << clean.Text();
  EXPECT_TRUE(Verify(ParseSchedule(WritePps(clean_schedule), "t.pps", {}), options).ok);
  EXPECT_TRUE(Verify(ParseSchedule(WriteJson(clean_schedule), "t.json", {}), options).ok);
  // A send that no receive meets: its receiver's F has no input, and the file says so.
  const VerifyReport orphan =
      Verify(ScheduleOf({TraceBuilder(0, 2).Unit({Send(1)}).Unit({Send(1)}).Build(),
                         TraceBuilder(1, 2).Unit({Recv(0)}).Build()}),
             options);
  EXPECT_FALSE(orphan.Find("dependencies")->ok()) << orphan.Text();

  // A cross that completed (small sends buffered): the order can still deadlock.
  const std::vector<Trace> cross = {TraceBuilder(0, 2).Unit({Send(1)}).Unit({Recv(1)}).Build(),
                                    TraceBuilder(1, 2).Unit({Send(0)}).Unit({Recv(0)}).Build()};
  EXPECT_TRUE(CheckTraces(cross).ok());
  const TraceSchedule ts = ScheduleFromTraces(cross);
  const VerifyReport v = Verify(ts.schedule, options);
  EXPECT_TRUE(v.Find("structure")->ok()) << v.Text();
  EXPECT_FALSE(v.Find("deadlock")->ok()) << v.Text();
  ASSERT_FALSE(v.cycle.empty());
  for (const CycleStep& step : v.cycle) {
    const CallRef call = ts.origin[step.rank][step.index];
    EXPECT_TRUE(call.valid()) << "every step of the cycle is a call: " << step.action;
  }
  // Under eager sends the same order completes.
  options.model = CommModel::kEager;
  EXPECT_TRUE(Verify(ts.schedule, options).Find("deadlock")->ok());
}

}  // namespace
}  // namespace pipeproof
