// deadlock: the event simulation, the Z3 proof, and the ground truth (a step-by-step run of the
// program, in verify_test_util.cpp) must agree; the reports must show the cycle.

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "schedule/formats.h"
#include "schedule/generate.h"
#include "schedule/lower.h"
#include "verify/internal.h"
#include "verify/verify.h"
#include "verify/verify_test_util.h"

namespace pipeproof {
namespace {

using testing::FailedChecks;
using testing::Generated;
using testing::Pps;

Schedule Testdata(const std::string& name) {
  return ReadScheduleFile(std::string(PIPEPROOF_TESTDATA_DIR) + "/verify/" + name);
}

Schedule WithoutWaits(Schedule s) {
  for (auto& program : s.program) {
    std::erase_if(program, [](const Action& a) { return a.op == Op::kWait; });
  }
  return s;
}

TEST(Deadlock, PyTorchIssue172668SendBeforeReceive) {
  const Schedule s = Testdata("pytorch_172668.pps");
  const VerifyReport nccl = Verify(s, {});
  EXPECT_EQ(FailedChecks(nccl), std::vector<std::string>{"deadlock"}) << nccl.Text();
  // The cycle: each rank's receive waits behind its own send, each send for the other's receive.
  ASSERT_EQ(nccl.cycle.size(), 4u) << nccl.Text();
  std::vector<std::pair<int, std::string>> steps;
  for (const CycleStep& step : nccl.cycle) steps.push_back({step.rank, step.action});
  EXPECT_EQ(steps, (std::vector<std::pair<int, std::string>>{
                       {0, "0SEND_F1"}, {1, "1RECV_F1"}, {1, "1SEND_F0"}, {0, "2RECV_F0"}}));
  EXPECT_NE(nccl.cycle[0].waits_for.find("rendezvous"), std::string::npos);
  EXPECT_NE(nccl.cycle[1].waits_for.find("one communication stream"), std::string::npos);
  const std::string text = nccl.Text();
  EXPECT_NE(text.find("it would run under the eager model"), std::string::npos) << text;
  EXPECT_NE(text.find("pytorch/pytorch issue 172668"), std::string::npos) << text;
  EXPECT_NE(text.find("*0SEND_F1"), std::string::npos) << "grid around the stuck point\n" << text;
  // Buffered sends get through; so do the same exchanges posted as groups.
  EXPECT_TRUE(Verify(s, {.model = CommModel::kEager}).ok);
  const VerifyReport grouped = Verify(Testdata("pytorch_172668_grouped.pps"), {});
  EXPECT_TRUE(grouped.ok) << grouped.Text();
}

TEST(Deadlock, DualPipeNeedsItsWaitGroupsUnderNccl) {
  for (bool overlap : {true, false}) {
    const Schedule reference = Generated("dualpipe", 4, 8, overlap);
    EXPECT_TRUE(Verify(reference, {}).ok);
    const VerifyReport bare = Verify(WithoutWaits(reference), {});
    EXPECT_EQ(FailedChecks(bare), std::vector<std::string>{"deadlock"}) << bare.Text();
    EXPECT_NE(bare.Text().find("pytorch/pytorch issue 172668"), std::string::npos);
    EXPECT_TRUE(Verify(WithoutWaits(reference), {.model = CommModel::kEager}).ok);
  }
}

TEST(Deadlock, OneFOneBWithoutGroupsDeadlocksUnderNccl) {
  // Rank 0 sends microbatch 1 forward while rank 1 first sends microbatch 0's gradient back:
  // both sends wait for receives queued behind them.
  const VerifyReport r =
      Verify(Pps("ranks 2\nstages 2\nmicrobatches 2\n"
                 "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n"
                 "rank 1: 1RECV_F0 1F0 1B0 1SEND_B0 1RECV_F1 1F1 1B1 1SEND_B1\n"),
             {});
  EXPECT_EQ(FailedChecks(r), std::vector<std::string>{"deadlock"}) << r.Text();
  EXPECT_EQ(r.cycle.size(), 4u) << r.Text();
  EXPECT_TRUE(r.Find("timing")->skipped());
}

TEST(Deadlock, NoZ3SaysTheProofWasSkipped) {
  const VerifyReport r = Verify(Generated("dualpipe", 2, 4), {.use_z3 = false});
  EXPECT_TRUE(r.ok);
  EXPECT_NE(r.Find("deadlock")->message.find("Z3 proof skipped (--no-z3)"), std::string::npos);
  if (HaveZ3()) {
    EXPECT_NE(Verify(Generated("dualpipe", 2, 4), {}).Find("deadlock")->message.find("Z3 proves"),
              std::string::npos);
  }
}

TEST(Deadlock, ComputeOrderThatCannotRun) {
  // Each rank waits for the other's first forward, which sits behind its own wait.
  const VerifyReport cross = Verify(Pps("ranks 2\nstages 4\nmicrobatches 1\nplacement loop\n"
                                        "rank 0: 2F0 0F0 2B0 0B0\n"
                                        "rank 1: 1F0 3F0 3B0 1B0\n"),
                                    {});
  EXPECT_EQ(FailedChecks(cross), std::vector<std::string>{"deadlock"}) << cross.Text();
  EXPECT_FALSE(cross.lowered);
  EXPECT_NE(cross.Text().find("no placement of SEND/RECV"), std::string::npos) << cross.Text();
  // A backward before its own forward is a dependency problem (and the order cannot run).
  const VerifyReport local = Verify(Pps("ranks 2\nstages 2\nmicrobatches 1\n"
                                        "rank 0: 0B0 0F0\n"
                                        "rank 1: 1F0 1B0\n"),
                                    {});
  EXPECT_EQ(FailedChecks(local), (std::vector<std::string>{"dependencies", "deadlock"}))
      << local.Text();
}

TEST(Deadlock, ComputeOnlyInputIsLowered) {
  const Schedule compute = ComputeOnly(Generated("zb1p", 4, 8));
  const VerifyReport r = Verify(compute, {});
  EXPECT_TRUE(r.ok) << r.Text();
  EXPECT_TRUE(r.lowered);
  EXPECT_NE(r.Text().find("compute-only input: verified after lowering"), std::string::npos);
}

// The three deciders over many schedules: generated ones and mutants of them that pass the
// structure check, under both models. Also: deadlock-free under nccl implies under eager.
TEST(Deadlock, SimulationZ3AndGroundTruthAgree) {
  std::vector<Schedule> schedules;
  std::mt19937 rng(172668);
  const std::vector<std::tuple<std::string, int, int>> sizes = {
      {"dualpipe", 2, 4},  {"dualpipe", 4, 8},        {"dualpipe", 6, 12}, {"dualpipev", 2, 4},
      {"dualpipev", 3, 7}, {"dualpipev", 4, 8},       {"1f1b", 3, 5},      {"zb1p", 3, 6},
      {"gpipe", 2, 3},     {"interleaved-1f1b", 2, 4}};
  for (const auto& [kind, r, m] : sizes) {
    for (bool overlap : {true, false}) {
      const Schedule base = Generated(kind, r, m, overlap);
      schedules.push_back(base);
      schedules.push_back(WithoutWaits(base));
      for (int k = 0; k < 14; ++k) {
        Schedule mutant = base;
        const auto& all = testing::AllMutations();
        if (!Mutate(mutant, all[rng() % all.size()], rng)) continue;
        if (testing::TruthStructure(mutant)) schedules.push_back(std::move(mutant));
      }
    }
  }
  int deadlocks = 0, compared = 0;
  double z3_seconds = 0;
  for (const Schedule& s : schedules) {
    const RouteIndex routes(s);
    const verify_internal::Messages messages = verify_internal::MatchMessages(s, routes);
    bool nccl_runs = false;
    for (CommModel model : {CommModel::kNccl, CommModel::kEager}) {
      const bool simulated =
          verify_internal::RunSimulation(s, routes, messages, model, Costs{}).timeline.complete;
      const bool truth = testing::TruthRunsToEnd(s, model);
      ASSERT_EQ(simulated, truth) << CommModelName(model) << "\n" << WritePps(s);
      if (model == CommModel::kNccl) nccl_runs = simulated;
      if (model == CommModel::kEager && nccl_runs) {
        ASSERT_TRUE(simulated) << "deadlock-free under nccl, not under eager\n" << WritePps(s);
      }
      deadlocks += !simulated;
      if (auto z3 = verify_internal::ProveWithZ3(s, routes, messages, model)) {
        ASSERT_EQ(z3->deadlock_free, simulated) << CommModelName(model) << "\n" << WritePps(s);
        if (!z3->deadlock_free) {
          ASSERT_FALSE(z3->cycle.empty());
        }
        z3_seconds += z3->seconds;
        ++compared;
      }
    }
  }
  std::printf("[ deadlock ] %zu schedules x 2 models: %d deadlocks; Z3 compared on %d (%.2f s)\n",
              schedules.size(), deadlocks, compared, z3_seconds);
  EXPECT_GT(deadlocks, 20);
}

// Every step of a reported cycle names an action that exists, and the steps form a loop.
TEST(Deadlock, CycleStepsNameRealActions) {
  std::mt19937 rng(7);
  int cycles = 0;
  for (int k = 0; k < 60; ++k) {
    Schedule s = Generated(k % 2 ? "dualpipe" : "dualpipev", 4, 8, k % 3 != 0);
    if (!testing::Mutate(s, k % 4 ? testing::Mutation::kMoveWait : testing::Mutation::kSwapSendRecv,
                         rng))
      continue;
    if (!testing::TruthStructure(s)) continue;
    const VerifyReport r = Verify(s, {.use_z3 = false});
    if (r.Find("deadlock")->ok()) continue;
    ++cycles;
    ASSERT_FALSE(r.cycle.empty()) << r.Text();
    for (const CycleStep& step : r.cycle) {
      ASSERT_LT(step.index, static_cast<int>(s.program[step.rank].size()));
      EXPECT_EQ(step.action, ToString(s.program[step.rank][step.index]));
      EXPECT_FALSE(step.waits_for.empty());
    }
  }
  EXPECT_GT(cycles, 5);
}

}  // namespace
}  // namespace pipeproof
