// timing: the timed simulation and the papers' bubble formulas.

#include <gtest/gtest.h>

#include <cmath>

#include "schedule/generate.h"
#include "verify/verify.h"
#include "verify/verify_test_util.h"

namespace pipeproof {
namespace {

using testing::Generated;

constexpr double kEps = 1e-9;

// DualPipe paper (DeepSeek-V3 report, Table 2): the pipeline bubble of DualPipe is
// (PP/2 - 1)(F&B + B - 3W); it is the largest per-rank bubble of the simulated reference
// schedule, with I = B - W, for every even R and enough microbatches (M >= 2R).
TEST(Timing, DualPipeBubbleIsThePapersFormula) {
  const Costs paper{
      .forward = 1, .backward = 2, .input_grad = 1, .weight_grad = 1, .overlap_fb = 3};
  const Costs slower{
      .forward = 2, .backward = 3, .input_grad = 2, .weight_grad = 1, .overlap_fb = 4.2};
  for (const Costs& c : {paper, slower}) {
    for (int r = 2; r <= 12; r += 2) {
      for (int m : {2 * r, 2 * r + 2, 4 * r}) {
        const Schedule s = Generated("dualpipe", r, m);
        for (CommModel model : {CommModel::kNccl, CommModel::kEager}) {
          const Timeline t = Simulate(s, model, c);
          ASSERT_TRUE(t.complete);
          const double formula = (r / 2 - 1) * (c.overlap_fb + c.backward - 3 * c.weight_grad);
          EXPECT_NEAR(t.MaxBubble(), formula, kEps)
              << "R=" << r << " M=" << m << " " << ToString(c) << " " << CommModelName(model);
        }
      }
    }
  }
}

// 1F1B: every rank idles (R - 1)(F + B), the warm-up and the cool-down.
TEST(Timing, OneFOneBBubbleIsRMinusOneTimesFPlusB) {
  for (const Costs& c : {Costs{}, Costs{.forward = 2, .backward = 3}}) {
    for (int r = 2; r <= 8; ++r) {
      for (int m : {r, 2 * r, 3 * r + 1}) {
        const Timeline t = Simulate(Generated("1f1b", r, m), CommModel::kNccl, c);
        ASSERT_TRUE(t.complete);
        const double formula = (r - 1) * (c.forward + c.backward);
        for (double b : t.bubble) EXPECT_NEAR(b, formula, kEps) << "R=" << r << " M=" << m;
        EXPECT_NEAR(t.makespan, (m + r - 1) * (c.forward + c.backward), kEps);
      }
    }
  }
}

// ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism"): deferring weight gradients into the
// cool-down cuts 1F1B's bubble to (R - 1)(F + I - W).
TEST(Timing, ZeroBubbleH1BubbleIsThePapersFormula) {
  for (const Costs& c : {Costs{}, Costs{.forward = 2, .backward = 3, .input_grad = 2}}) {
    for (int r = 2; r <= 8; ++r) {
      const Timeline t = Simulate(Generated("zb1p", r, 3 * r), CommModel::kNccl, c);
      ASSERT_TRUE(t.complete);
      EXPECT_NEAR(t.MaxBubble(), (r - 1) * (c.forward + c.input_grad - c.weight_grad), kEps)
          << "R=" << r << " " << ToString(c);
    }
  }
}

TEST(Timing, TimelineIsConsistent) {
  const Schedule s = Generated("dualpipev", 4, 10);
  const Costs c{.forward = 1.5,
                .backward = 2.5,
                .input_grad = 1.25,
                .weight_grad = 1.25,
                .overlap_fb = 3.5,
                .latency = 0.1};
  const Timeline t = Simulate(s, CommModel::kNccl, c);
  ASSERT_TRUE(t.complete);
  ASSERT_EQ(t.ranks.size(), 4u);
  double latest = 0;
  for (int r = 0; r < 4; ++r) {
    ASSERT_EQ(t.ranks[r].size(), s.program[r].size());
    double busy = 0, compute_free = 0;
    for (int i = 0; i < static_cast<int>(s.program[r].size()); ++i) {
      const TimedAction& a = t.ranks[r][i];
      EXPECT_EQ(a.rank, r);
      EXPECT_EQ(a.index, i);
      EXPECT_LE(a.start, a.end);
      latest = std::max(latest, a.end);
      if (IsCompute(s.program[r][i].op)) {
        EXPECT_GE(a.start, compute_free - kEps) << "computes of a rank do not overlap";
        compute_free = a.end;
        busy += a.end - a.start;
      }
    }
    EXPECT_NEAR(t.busy[r], busy, kEps);
    EXPECT_NEAR(t.bubble[r], t.makespan - busy, kEps);
  }
  EXPECT_NEAR(t.makespan, latest, kEps);
  EXPECT_GT(t.BubbleRatio(), 0);
  EXPECT_LT(t.BubbleRatio(), 1);
}

TEST(Timing, LatencyStretchesTheCriticalPath) {
  // One microbatch through two ranks: F, message, F, B, message, B.
  const Schedule one = testing::Pps(
      "ranks 2\nstages 2\nmicrobatches 1\n"
      "rank 0: 0F0 0SEND_F0 0RECV_B0 0B0\n"
      "rank 1: 1RECV_F0 1F0 1B0 1SEND_B0\n");
  for (CommModel model : {CommModel::kNccl, CommModel::kEager}) {
    EXPECT_NEAR(Simulate(one, model, {.latency = 0.25}).makespan, 1 + 1 + 2 + 2 + 2 * 0.25, kEps);
  }
  // More latency never makes a schedule faster.
  const Schedule s = Generated("1f1b", 4, 8);
  double previous = 0;
  for (double latency : {0.0, 0.1, 0.5, 1.0}) {
    const double makespan = Simulate(s, CommModel::kNccl, {.latency = latency}).makespan;
    EXPECT_GE(makespan, previous + 2 * 3 * latency - kEps);
    previous = makespan;
  }
}

TEST(Timing, ComputeOnlyScheduleKeepsItsOwnPositions) {
  const Schedule compute = ComputeOnly(Generated("1f1b", 3, 6));
  const Timeline t = Simulate(compute, CommModel::kNccl, {});
  ASSERT_TRUE(t.complete);
  for (int r = 0; r < 3; ++r) {
    ASSERT_EQ(t.ranks[r].size(), compute.program[r].size());
    for (const TimedAction& a : t.ranks[r]) EXPECT_TRUE(std::isfinite(a.end));
  }
  EXPECT_NEAR(t.makespan, Simulate(Generated("1f1b", 3, 6), CommModel::kNccl, {}).makespan, kEps);
}

TEST(Timing, DeadlockedScheduleIsIncomplete) {
  Schedule s = Generated("dualpipe", 4, 8);
  for (auto& program : s.program)
    std::erase_if(program, [](const Action& a) { return a.op == Op::kWait; });
  const Timeline t = Simulate(s, CommModel::kNccl, {});
  EXPECT_FALSE(t.complete);
  EXPECT_FALSE(std::isfinite(t.ranks[0].back().end));
  EXPECT_THROW(Simulate(testing::Pps("ranks 1\nstages 1\nmicrobatches 1\nrank 0: 0F0\n"),
                        CommModel::kNccl, {}),
               InputError);
}

TEST(Timing, VerifyReportsTiming) {
  const VerifyReport r = Verify(Generated("dualpipe", 4, 8), {.costs = Costs{.overlap_fb = 2.5}});
  ASSERT_TRUE(r.timeline.has_value());
  EXPECT_NEAR(r.timeline->MaxBubble(), 1 * (2.5 + 2 - 3), kEps);
  EXPECT_NE(r.Find("timing")->message.find("FB=2.5"), std::string::npos);
}

TEST(Timing, ParseCosts) {
  const Costs c = ParseCosts("F=2, B=3,W=1,I=2,FB=4.2,L=0.5");
  EXPECT_EQ(c.forward, 2);
  EXPECT_EQ(c.backward, 3);
  EXPECT_EQ(c.weight_grad, 1);
  EXPECT_EQ(c.input_grad, 2);
  EXPECT_NEAR(c.overlap_fb, 4.2, kEps);
  EXPECT_EQ(c.latency, 0.5);
  EXPECT_EQ(ParseCosts("").forward, 1);
  EXPECT_EQ(ParseCosts("B=4").input_grad, 3) << "I = B - W unless given";
  EXPECT_EQ(ParseCosts("B=4").overlap_fb, 5) << "FB = F + B unless given";
  EXPECT_EQ(ParseCosts("B=4,I=1.5,FB=4").input_grad, 1.5);
  EXPECT_EQ(ParseCosts("B=4,I=1.5,FB=4").overlap_fb, 4);
  EXPECT_EQ(ParseCosts("L=2").overlap_fb, 3) << "other costs keep their defaults";
  EXPECT_THROW(ParseCosts("B=1,W=2"), InputError);
  for (const char* bad : {"F", "F=", "F=x", "Q=1", "F=-1", "F=1e999", "F=1,,B=nan"}) {
    EXPECT_THROW(ParseCosts(bad), InputError) << bad;
  }
}

}  // namespace
}  // namespace pipeproof
