#include "exec/run_plan.h"

#include <gtest/gtest.h>

#include <map>

#include "schedule/generate.h"

namespace pipeproof {
namespace {

std::vector<Schedule> Kinds() {
  return {Generate({.kind = "dualpipe", .ranks = 4, .microbatches = 8}),
          Generate({.kind = "dualpipe", .ranks = 4, .microbatches = 8, .overlap = false}),
          Generate({.kind = "dualpipev", .ranks = 3, .microbatches = 6}),
          Generate({.kind = "1f1b", .ranks = 3, .microbatches = 5}),
          Generate({.kind = "zb1p", .ranks = 3, .microbatches = 5}),
          Generate({.kind = "interleaved-1f1b", .ranks = 2, .microbatches = 4}),
          Generate({.kind = "gpipe", .ranks = 2, .microbatches = 3})};
}

TEST(ForwardOnlyTest, KeepsForwardsTheirMessagesAndNonEmptyWaits) {
  const Schedule s = Generate({.kind = "dualpipe", .ranks = 4, .microbatches = 8});
  const Schedule f = ForwardOnly(s);
  for (int r = 0; r < s.ranks; ++r) {
    int forwards = 0, expected = 0;
    bool pending = false;
    for (const Action& a : s.program[r]) expected += a.op == Op::kForward || a.op == Op::kOverlapFB;
    for (const Action& a : f.program[r]) {
      EXPECT_TRUE(a.op == Op::kForward || a.op == Op::kSendF || a.op == Op::kRecvF || a.op == Op::kWait)
          << ToString(a);
      forwards += a.op == Op::kForward;
      if (a.op == Op::kWait) {
        EXPECT_TRUE(pending) << "rank " << r << ": a WAIT with nothing to post";
        pending = false;
      }
      pending |= IsComm(a.op);
    }
    EXPECT_EQ(forwards, expected);
  }
  EXPECT_EQ(f.placement, s.placement);
  EXPECT_EQ(f.routes, s.routes);
}

// NCCL has no tags: the k-th send from p to q meets the k-th receive on q from p. For a sound
// schedule both name the same payload; the plan's channel counters must line them up.
TEST(PlanRankTest, ChannelCountersPairSendsWithTheirReceives) {
  for (const Schedule& s : Kinds()) {
    for (const Schedule& pass : {s, ForwardOnly(s)}) {
      RouteIndex routes(pass);
      std::map<std::tuple<int, int, int64_t>, Payload> sent, received;
      for (int r = 0; r < pass.ranks; ++r) {
        const RankPlan plan = PlanRank(pass, routes, r);
        EXPECT_TRUE(plan.unposted.empty());
        for (const PlannedComm& c : plan.comms) {
          auto key = c.send ? std::tuple{r, c.peer, c.channel_seq} : std::tuple{c.peer, r, c.channel_seq};
          (c.send ? sent : received)[key] = c.payload;
        }
      }
      EXPECT_EQ(sent, received) << s.kind;
    }
  }
}

TEST(PlanRankTest, GroupsAreWaitsAndLoneOpsAreUnits) {
  const Schedule d = Generate({.kind = "dualpipe", .ranks = 4, .microbatches = 8});
  RouteIndex routes(d);
  const RankPlan p = PlanRank(d, routes, 0);
  EXPECT_TRUE(p.grouped);
  int waits = 0;
  for (size_t i = 0; i < d.program[0].size(); ++i) {
    if (d.program[0][i].op != Op::kWait) continue;
    ++waits;
    const int u = p.unit_of_action[i];
    ASSERT_GE(u, 0);
    EXPECT_EQ(p.units[u].posted_at, static_cast<int>(i));
    for (int c : p.units[u].comms) EXPECT_EQ(p.unit_of_action[p.comms[c].action], u);
  }
  EXPECT_EQ(waits, static_cast<int>(p.units.size()));

  const Schedule f = Generate({.kind = "1f1b", .ranks = 3, .microbatches = 4});
  RouteIndex froutes(f);
  const RankPlan q = PlanRank(f, froutes, 1);
  EXPECT_FALSE(q.grouped);
  EXPECT_EQ(q.units.size(), q.comms.size());
  for (const PlannedUnit& u : q.units) EXPECT_EQ(u.comms.size(), 1u);
  EXPECT_EQ(q.computes, 8);
}

TEST(PlanRunTest, CountersRunOnAcrossPasses) {
  const Schedule s = Generate({.kind = "zb1p", .ranks = 2, .microbatches = 3});
  const RunPlan plan = PlanRun(s);
  ASSERT_EQ(plan.passes.size(), 2u);
  EXPECT_EQ(plan.passes[0].kind, PassKind::kTrain);
  EXPECT_EQ(plan.passes[1].kind, PassKind::kInference);
  for (int r = 0; r < 2; ++r) {
    const PassBase& b = plan.passes[1].base[r];
    EXPECT_EQ(b.action, static_cast<int64_t>(s.program[r].size()));
    EXPECT_EQ(b.comm, static_cast<int64_t>(plan.passes[0].ranks[r].comms.size()));
    EXPECT_EQ(b.compute, plan.passes[0].ranks[r].computes);
    EXPECT_EQ(plan.Actions(r), b.action + static_cast<int64_t>(plan.passes[1].schedule.program[r].size()));
  }
  EXPECT_EQ(plan.passes[1].base[0].sent[1], 3);      // three activations in the train pass
  EXPECT_EQ(plan.passes[1].base[1].received[0], 3);
  EXPECT_EQ(plan.passes[1].base[0].received[1], 3);  // and three gradients back
  EXPECT_EQ(plan.NameAction(0, 0), "train [0] 0F0");
  EXPECT_EQ(plan.NameAction(0, plan.passes[1].base[0].action), "inference [0] 0F0");
}

}  // namespace
}  // namespace pipeproof
