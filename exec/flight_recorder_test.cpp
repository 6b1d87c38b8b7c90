#include "exec/flight_recorder.h"

#include <gtest/gtest.h>

#include "schedule/generate.h"

namespace pipeproof {
namespace {

TEST(FlightRecorderTest, KeepsTheLastEventsAndDescribesTheBlockedUnit) {
  const Schedule s = Generate({.kind = "dualpipe", .ranks = 2, .microbatches = 4});
  const RunPlan plan = PlanRun(s);
  FlightRecorder rec(0, plan, 4, Clock::now());
  for (int i = 0; i < 6; ++i) rec.Record(i, FlightEventKind::kStarted);
  rec.Record(3, FlightEventKind::kDelayed, 120);
  auto view = std::make_shared<UnitView>();
  view->what = "group #2 of 2 ops";
  view->ops = {"0SEND_F1 -> rank 1 (message #1)", "3RECV_F2 <- rank 1 (message #0)"};
  view->progress = std::make_shared<UnitProgress>(2);
  view->progress->ops[0].store(OpProgress::kComplete);
  view->progress->ops[1].store(OpProgress::kPosted);
  rec.SetActivity(RankActivity::kBlocked, "train [5] WAIT", view);

  const RankSnapshot snap = rec.Snapshot(3);
  EXPECT_EQ(snap.activity, RankActivity::kBlocked);
  ASSERT_EQ(snap.tail.size(), 3u);
  EXPECT_EQ(snap.tail.back().event, "delayed 120us");
  EXPECT_EQ(snap.tail.front().action, plan.NameAction(0, 4));
  const std::string text = snap.Text();
  EXPECT_NE(text.find("rank 0: blocked for"), std::string::npos) << text;
  EXPECT_NE(text.find("at train [5] WAIT: group #2 of 2 ops"), std::string::npos) << text;
  EXPECT_NE(text.find("3RECV_F2 <- rank 1 (message #0): posted, no match yet"), std::string::npos) << text;
  EXPECT_NE(text.find("0SEND_F1 -> rank 1 (message #1): complete"), std::string::npos) << text;

  const RankSnapshot back = RankSnapshot::FromJson(snap.Json());
  EXPECT_EQ(back.Text(), text);
  EXPECT_THROW(RankSnapshot::FromJson("{}"), std::runtime_error);
  EXPECT_FALSE(IsBusy(RankActivity::kBlocked));
  EXPECT_TRUE(IsBusy(RankActivity::kDelaying));
}

TEST(FlightRecorderTest, SilentRanksAreNamedAsSuch) {
  RankSnapshot s;
  s.rank = 3;
  s.answered = false;
  EXPECT_EQ(s.Text(), "rank 3: no answer: the process is dead or stuck where pipeproof cannot see it\n");
  const std::string dump = FormatDump("hang: something", {s});
  EXPECT_EQ(dump.rfind("hang: something\n", 0), 0u);
}

}  // namespace
}  // namespace pipeproof
