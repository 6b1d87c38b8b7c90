#include "exec/fault_plan.h"

#include <gtest/gtest.h>

#include <map>

#include "exec/fault_draw.h"
#include "schedule/generate.h"

namespace pipeproof {
namespace {

const MessageFormat kFormat{64, 52};

FaultPlan Draw(const Schedule& s, FaultOptions o) {
  return DrawFaultPlan(PlanRun(s), o, kFormat, s.kind);
}

FaultOptions Everything(uint64_t seed) {
  FaultOptions o;
  o.seed = seed;
  o.delay = DelaySpec::Parse("heavy:50us");
  o.stragglers.push_back({1, 2.5});
  o.shuffle = true;
  o.poison = true;
  return o;
}

TEST(FaultPlanTest, JsonRoundTripsEveryField) {
  const Schedule s = Generate({.kind = "dualpipe", .ranks = 4, .microbatches = 8});
  for (auto corrupt : {CorruptKind::kBitflip, CorruptKind::kSwap, CorruptKind::kDrop}) {
    FaultOptions o = Everything(7);
    o.corrupt = corrupt;
    o.kill_rank = 2;
    const FaultPlan plan = Draw(s, o);
    ASSERT_TRUE(plan.corrupt && plan.kill && plan.target);
    EXPECT_EQ(ParseFaultPlan(plan.Json(), "plan.json"), plan);
  }
  EXPECT_EQ(ParseFaultPlan(FaultPlan{}.Json(), "empty.json"), FaultPlan{});
  EXPECT_TRUE(FaultPlan{}.Empty());
  EXPECT_EQ(FaultPlan{}.Summary(), "no faults\n");
}

TEST(FaultPlanTest, TheSameSeedDrawsTheSamePlan) {
  const Schedule s = Generate({.kind = "dualpipev", .ranks = 3, .microbatches = 6});
  EXPECT_EQ(Draw(s, Everything(3)), Draw(s, Everything(3)));
  EXPECT_NE(Draw(s, Everything(3)), Draw(s, Everything(4)));
  // Each kind of fault has its own stream: shuffling does not move the delays.
  FaultOptions plain = Everything(3);
  plain.shuffle = false;
  EXPECT_EQ(Draw(s, plain).ranks[2].post_delay_us, Draw(s, Everything(3)).ranks[2].post_delay_us);
}

TEST(FaultPlanTest, DrawnArraysCoverEverySite) {
  const Schedule s = Generate({.kind = "1f1b", .ranks = 3, .microbatches = 4});
  const RunPlan run = PlanRun(s);
  const FaultPlan plan = Draw(s, Everything(1));
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(static_cast<int64_t>(plan.ranks[r].post_delay_us.size()), run.Comms(r));
    EXPECT_EQ(static_cast<int64_t>(plan.ranks[r].deliver_delay_us.size()), run.Comms(r));
    EXPECT_EQ(static_cast<int64_t>(plan.ranks[r].compute_delay_us.size()), run.Computes(r));
  }
  EXPECT_EQ(plan.ranks[1].straggler, 2.5);
  // Sends are not delivered to anyone: their delivery delays are zero.
  const RankPlan& rank0 = run.passes[0].ranks[0];
  for (size_t c = 0; c < rank0.comms.size(); ++c) {
    if (rank0.comms[c].send) {
      EXPECT_EQ(plan.ranks[0].deliver_delay_us[c], 0u);
    }
  }
}

TEST(FaultPlanTest, ShufflesKeepEachRankPairsOrder) {
  const Schedule s = Generate({.kind = "dualpipe", .ranks = 6, .microbatches = 12});
  const RunPlan run = PlanRun(s);
  const FaultPlan plan = Draw(s, Everything(11));
  int shuffled = 0;
  for (const RankFaults& f : plan.ranks) shuffled += static_cast<int>(f.unit_orders.size());
  EXPECT_GT(shuffled, 10);
  EXPECT_NO_THROW(CheckPlanFits(plan, run));
  // Reordering two sends to one rank is the swap negative control, not a shuffle.
  FaultPlan bad = plan;
  bad.target.reset();
  const RankPlan& rank0 = run.passes[0].ranks[0];
  for (size_t u = 0; u < rank0.units.size(); ++u) {
    std::map<int, std::vector<int>> to_peer;
    for (size_t k = 0; k < rank0.units[u].comms.size(); ++k) {
      const PlannedComm& c = rank0.comms[rank0.units[u].comms[k]];
      if (c.send) to_peer[c.peer].push_back(static_cast<int>(k));
    }
    for (auto& [peer, ks] : to_peer) {
      if (ks.size() < 2) continue;
      std::vector<int> order(rank0.units[u].comms.size());
      for (size_t k = 0; k < order.size(); ++k) order[k] = static_cast<int>(k);
      std::swap(order[ks[0]], order[ks[1]]);
      bad.ranks[0].unit_orders = {{static_cast<int64_t>(u), order}};
      EXPECT_THROW(CheckPlanFits(bad, run), InputError);
      return;
    }
  }
  FAIL() << "no DualPipe unit sends twice to one rank";
}

TEST(FaultPlanTest, NegativeControlsAimAtRealMessages) {
  const Schedule d = Generate({.kind = "dualpipe", .ranks = 4, .microbatches = 8});
  FaultOptions o;
  o.corrupt = CorruptKind::kBitflip;
  const FaultPlan flip = Draw(d, o);
  EXPECT_LT(flip.corrupt->element, kFormat.elements);
  EXPECT_GE(flip.corrupt->bit, 49);
  EXPECT_LE(flip.corrupt->bit, 52);
  EXPECT_NE(flip.DescribeNegativeControl().find("bitflip of bit"), std::string::npos);
  o.corrupt = CorruptKind::kSwap;
  EXPECT_NO_THROW(CheckPlanFits(Draw(d, o), PlanRun(d)));
  // 1F1B posts every op on its own: nothing to swap inside a unit.
  EXPECT_THROW(Draw(Generate({.kind = "1f1b", .ranks = 3, .microbatches = 4}), o), InputError);
  o.corrupt.reset();
  o.kill_rank = 4;
  EXPECT_THROW(Draw(d, o), InputError);
  o.kill_rank = 3;
  const FaultPlan kill = Draw(d, o);
  EXPECT_LT(kill.kill->action, static_cast<int64_t>(d.program[3].size()));
  FaultOptions s;
  s.stragglers.push_back({9, 2});
  EXPECT_THROW(Draw(d, s), InputError);
}

TEST(FaultPlanTest, AReplayMustFitItsRun) {
  const Schedule a = Generate({.kind = "dualpipe", .ranks = 4, .microbatches = 8});
  const Schedule b = Generate({.kind = "dualpipe", .ranks = 4, .microbatches = 10});
  const FaultPlan plan = Draw(a, Everything(2));
  EXPECT_NO_THROW(CheckPlanFits(plan, PlanRun(a)));
  EXPECT_THROW(CheckPlanFits(plan, PlanRun(b)), InputError);
  // A plan edited to fit no run: delay arrays of another length, a unit the rank does not have.
  auto refused = [&](FaultPlan edited, const std::string& says) {
    edited.target.reset();  // the counts alone must catch it
    try {
      CheckPlanFits(edited, PlanRun(a));
      ADD_FAILURE() << "accepted: " << says;
    } catch (const InputError& e) {
      EXPECT_NE(e.message().find(says), std::string::npos) << e.message();
    }
  };
  FaultPlan shorter = plan;  // a prefix: the last op has no delay
  shorter.ranks[1].post_delay_us.pop_back();
  EXPECT_NO_THROW(CheckPlanFits(shorter, PlanRun(a)));
  FaultPlan longer = plan;
  longer.ranks[1].post_delay_us.push_back(7);
  refused(longer, "ranks[1].post_delay_us has");
  longer = plan;
  longer.ranks[0].compute_delay_us.push_back(7);
  refused(longer, "ranks[0].compute_delay_us has");
  FaultPlan unit = plan;
  unit.ranks[2].unit_orders.push_back({.unit = 1 << 20, .order = {0}});
  refused(unit, "ranks[2].unit_orders names unit 1048576");
}

TEST(FaultPlanTest, ReaderNamesWhatIsWrong) {
  auto error = [](const std::string& text) {
    try {
      ParseFaultPlan(text, "p.json");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string head = R"({"format": "pipeproof fault plan", "version": 1, )";
  EXPECT_NE(error("{").find("p.json: error: not valid JSON"), std::string::npos) << error("{");
  EXPECT_NE(error("[]").find("expected a JSON object"), std::string::npos);
  EXPECT_NE(error(R"({"format": "x", "version": 1})").find("not a pipeproof fault plan"), std::string::npos);
  EXPECT_NE(error(head + R"("ranks": [{"post_delay_us": [1, -2]}]})").find("ranks[0].post_delay_us[1]: -2 is out of range"),
            std::string::npos);
  EXPECT_NE(error(head + R"("ranks": [{"post_delay_us": [1.5]}]})").find("expected an integer"), std::string::npos);
  EXPECT_NE(error(head + R"("ranks": [{"unit_orders": [{"unit": 0, "order": [0, 0]}]}]})").find("not a permutation"),
            std::string::npos);
  EXPECT_NE(error(head + R"("corrupt": {"kind": "melt"}})").find("corrupt.kind"), std::string::npos);
  EXPECT_NE(error(head + R"("corrupt": {"kind": "drop", "from": 0, "to": 1}})").find("missing \"message\""), std::string::npos);
  EXPECT_NE(error(head + R"("ranks": [{"straggler": 0.5}]})").find("between 1 and 1000"), std::string::npos);
  EXPECT_NE(error(head + R"("kill": {"rank": 1}})").find("kill: missing \"action\""), std::string::npos);
  // Every error names its line and column.
  EXPECT_NE(error(head + "\n\"ranks\": [{\"post_delay_us\": [1,\n -2]}]}").find("p.json:3:2: error: ranks[0].post_delay_us[1]"),
            std::string::npos)
      << error(head + "\n\"ranks\": [{\"post_delay_us\": [1,\n -2]}]}");
  // nlohmann would keep the second silently: a plan that says two things is refused.
  EXPECT_NE(error(head + R"("seed": 1, "seed": 2})").find("key 'seed' appears twice"), std::string::npos)
      << error(head + R"("seed": 1, "seed": 2})");
}

TEST(FaultPlanTest, ReaderSurvivesEveryTruncation) {
  const Schedule s = Generate({.kind = "dualpipev", .ranks = 2, .microbatches = 4});
  FaultOptions o = Everything(5);
  o.corrupt = CorruptKind::kDrop;
  o.kill_rank = 1;
  const std::string text = Draw(s, o).Json();
  for (size_t n = 0; n < text.size(); n += 7) {
    try {
      ParseFaultPlan(text.substr(0, n), "cut.json");
    } catch (const InputError&) {
    }
  }
}

TEST(DelaySpecTest, ParsesDistributionsAndUnits) {
  DelaySpec d = DelaySpec::Parse("uniform:2ms");
  EXPECT_EQ(d.distribution, DelayDistribution::kUniform);
  EXPECT_EQ(d.mean_us, 2000);
  EXPECT_EQ(DelaySpec::Parse("exp").mean_us, 100);
  EXPECT_EQ(DelaySpec::Parse("pareto:1s").distribution, DelayDistribution::kHeavyTailed);
  EXPECT_EQ(DelaySpec::Parse("exp:250").mean_us, 250);
  EXPECT_DOUBLE_EQ(DelaySpec::Parse("exp:200ns").mean_us, 0.2);
  EXPECT_THROW(DelaySpec::Parse("gauss:1ms"), InputError);
  EXPECT_THROW(DelaySpec::Parse("exp:fast"), InputError);
  EXPECT_THROW(DelaySpec::Parse("exp:-1ms"), InputError);
  d.ParseWhere("compute,post");
  EXPECT_TRUE(d.at_post && d.at_compute && !d.at_deliver);
  EXPECT_EQ(d.ToString(), "uniform:2000us at post,compute");
  EXPECT_THROW(d.ParseWhere("post,later"), InputError);
  EXPECT_EQ(Straggler::Parse("3:2.5").factor, 2.5);
  EXPECT_THROW(Straggler::Parse("3"), InputError);
  EXPECT_THROW(Straggler::Parse("3:0.5"), InputError);
}

TEST(DelaySpecTest, MeansComeOutRoughlyRight) {
  const Schedule s = Generate({.kind = "dualpipe", .ranks = 8, .microbatches = 32});
  for (const char* spec : {"uniform:100us", "exp:100us", "heavy:100us"}) {
    FaultOptions o;
    o.delay = DelaySpec::Parse(spec);
    const FaultPlan plan = Draw(s, o);
    double sum = 0, n = 0, max = 0;
    for (const RankFaults& f : plan.ranks) {
      for (uint32_t d : f.compute_delay_us) {
        sum += d;
        ++n;
        max = std::max<double>(max, d);
      }
    }
    EXPECT_NEAR(sum / n, 100, 25) << spec;
    EXPECT_LE(max, 10000) << spec;  // heavy tails are capped at 100 means
  }
}

}  // namespace
}  // namespace pipeproof
