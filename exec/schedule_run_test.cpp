#include "exec/schedule_run.h"
#include "exec/memory_limit_test_util.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "schedule/formats.h"
#include "schedule/generate.h"
#include "schedule/lower.h"

namespace pipeproof {
namespace {

ScheduleRunOptions Small() {
  ScheduleRunOptions o;
  o.model.shape = {8, 4, 2};
  o.verify.use_z3 = false;
  o.watchdog.timeout_s = 0.3;
  o.schedule_name = "test";
  return o;
}

Schedule SendBeforeRecv() {
  return ReadScheduleFile(std::string(PIPEPROOF_TESTDATA_DIR) + "/exec/send-before-recv.pps");
}

TEST(ScheduleRunTest, ASoundScheduleRunsAndMatches) {
  const Schedule s = GenerateDualPipe(4, 8, true);
  ScheduleRunOptions o = Small();
  o.draw.delay = DelaySpec::Parse("exp:50us");
  o.draw.shuffle = true;
  auto world = MakeWorld(o.world);
  bool started = false;
  o.on_start = [&](const VerifyReport& report, const FaultPlan& plan) {
    started = true;
    EXPECT_TRUE(report.ok);
    EXPECT_FALSE(plan.Empty());
  };
  const ScheduleRun run = RunSchedule(s, o, *world);
  EXPECT_TRUE(started);
  EXPECT_FALSE(run.refused());
  ASSERT_TRUE(run.outcome.has_value());
  EXPECT_EQ(run.outcome->status, RunStatus::kMatch) << run.outcome->Text();
}

TEST(ScheduleRunTest, AScheduleThatFailsVerificationIsRefusedAndNothingRuns) {
  ScheduleRunOptions o = Small();
  auto world = MakeWorld(o.world);
  bool started = false;
  o.on_start = [&](const VerifyReport&, const FaultPlan&) { started = true; };
  const ScheduleRun run = RunSchedule(SendBeforeRecv(), o, *world);
  EXPECT_TRUE(run.refused());
  EXPECT_FALSE(started);
  EXPECT_FALSE(run.outcome.has_value());
  EXPECT_FALSE(run.report.Find("deadlock")->ok());
}

// --allow-deadlock: a schedule whose only fault is its deadlock runs, and the watchdog stops it.
TEST(ScheduleRunTest, ADeadlockRunsWhenAllowedAndHangs) {
  ScheduleRunOptions o = Small();
  o.allow_deadlock = true;
  auto world = MakeWorld(o.world);
  const ScheduleRun run = RunSchedule(SendBeforeRecv(), o, *world);
  EXPECT_FALSE(run.refused());
  ASSERT_TRUE(run.outcome.has_value());
  EXPECT_EQ(run.outcome->status, RunStatus::kHang);
  EXPECT_EQ(run.outcome->ExitCode(), 3);
}

// The memory estimate counts the verifier's activation peaks: a model too large for the memory
// this process may use is refused before anything is allocated.
TEST(ScheduleRunTest, ARunThatCannotFitInMemoryIsRefusedFirst) {
  ScheduleRunOptions o = Small();
  const testing::MemoryLimit limit("1073741824");  // 1 GiB
  auto world = MakeWorld(o.world);
  // The control: the small model fits under the same limit.
  EXPECT_EQ(RunSchedule(GenerateDualPipe(4, 8, true), o, *world).outcome->status, RunStatus::kMatch);
  o.model.shape = {4096, 4096, 4};
  try {
    RunSchedule(GenerateDualPipe(4, 8, true), o, *world);
    ADD_FAILURE() << "a run far beyond 1 GiB was not refused";
  } catch (const InputError& e) {
    EXPECT_NE(e.message().find("this run needs at least"), std::string::npos) << e.message();
  }
}

// The verifier's own memory counts too, and is checked before it verifies: a Z3 search may take
// its whole memory cap, which a small limit cannot hold even for a tiny schedule; the certified
// proof (the default) needs a few hundred bytes per action.
TEST(ScheduleRunTest, TheVerifiersMemoryIsCountedBeforeItRuns) {
  ScheduleRunOptions o = Small();
  const Schedule s = GenerateDualPipe(4, 8, true);
  VerifyOptions search = o.verify;
  search.use_z3 = true;
  search.z3_search = true;
  EXPECT_GE(VerifierMemoryBytes(s, search), search.z3_memory_mb << 20);
  EXPECT_LT(VerifierMemoryBytes(s, o.verify), int64_t{64} << 20);
  EXPECT_GT(VerifierMemoryBytes(GenerateDualPipe(32, 256, true), o.verify), VerifierMemoryBytes(s, o.verify));
  const testing::MemoryLimit limit("268435456");  // 256 MiB
  auto world = MakeWorld(o.world);
  EXPECT_EQ(RunSchedule(s, o, *world).outcome->status, RunStatus::kMatch);  // the control
  o.verify.use_z3 = true;
  o.verify.z3_search = true;
  try {
    RunSchedule(s, o, *world);
    ADD_FAILURE() << "a Z3 search that may take 4 GiB was not refused under 256 MiB";
  } catch (const InputError& e) {
    EXPECT_NE(e.message().find("verifying this schedule"), std::string::npos) << e.message();
  }
}

TEST(ScheduleRunTest, AComputeOnlyScheduleIsLoweredFirst) {
  std::string name = "1f1b";
  const Schedule s =
      LowerIfComputeOnly(Generate({.kind = "1f1b", .ranks = 2, .microbatches = 3, .with_comm = false}), &name);
  EXPECT_TRUE(HasComm(s));
  EXPECT_EQ(name, "1f1b, SEND/RECV inserted by lowering");
  ScheduleRunOptions o = Small();
  auto world = MakeWorld(o.world);
  EXPECT_EQ(RunSchedule(s, o, *world).outcome->status, RunStatus::kMatch);
}

}  // namespace
}  // namespace pipeproof
