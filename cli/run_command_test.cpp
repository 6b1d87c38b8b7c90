// `pipeproof run` as a user runs it: outputs, exit statuses, reports, replays, refusals.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdlib>

#include "cli/command_test_util.h"
#include "exec/memory_limit_test_util.h"

namespace pipeproof {
namespace {

using testing::RunPipeproof;
using testing::ReadWhole;

const std::string kSmall = " --hidden 8 --seq 4 --micro-batch-size 2";
const std::string kTestdata = PIPEPROOF_TESTDATA_DIR;

std::string Temp(const std::string& name) { return testing::ScratchPath(name); }

using testing::Has;

TEST(RunCommandTest, MatchesUnderFaultsAndWritesAReport) {
  const std::string report = Temp("report.json");
  auto r = RunPipeproof("run --kind dualpipe -r 4 -m 8" + kSmall +
                        " --delay exp:100us --shuffle --poison --straggler 1:2 --seed 3 --report " + report);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(Has(r.out, "exact: all 17 tensors match (1 losses, 8 outputs, 8 gradients), bit for bit")) << r.out;
  EXPECT_TRUE(Has(r.out, "delays before posting")) << r.out;
  EXPECT_TRUE(Has(r.out, "result: match")) << r.out;
  const auto j = nlohmann::json::parse(ReadWhole(report));
  EXPECT_EQ(j["status"], "match");
  EXPECT_EQ(j["exit"], 0);
  EXPECT_EQ(j["comparison"]["compared"], 17);
  EXPECT_EQ(j["transport"], "threads");
}

TEST(RunCommandTest, QuietPrintsTheResultLine) {
  auto r = RunPipeproof("run --kind zb1p -r 3 -m 6 -q --dtype f32" + kSmall);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "result: match: every loss, output and gradient equals the reference bit for bit (exit 0)\n");
  r = RunPipeproof("run --kind zb1p -r 3 -m 6 -q --dtype f32 --tolerance --rtol 1e-5" + kSmall);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(Has(r.out, "within tolerance")) << r.out;
}

TEST(RunCommandTest, ComputeOnlyFilesAreLoweredFirst) {
  auto r = RunPipeproof("run " + kTestdata + "/peers/pytorch/dualpipev_4rank_10mb.csv" + kSmall + " --delay uniform:50us");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(Has(r.out, "SEND/RECV inserted by lowering")) << r.out;
}

TEST(RunCommandTest, RefusesAScheduleThatFailsVerification) {
  auto r = RunPipeproof("run " + kTestdata + "/exec/send-before-recv.pps" + kSmall);
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_TRUE(Has(r.err, "deadlock")) << r.err;
  EXPECT_TRUE(Has(r.err, "FAIL")) << r.err;
  EXPECT_TRUE(Has(r.err, "fails verification; run refuses to execute it")) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(RunCommandTest, RefusesARunThatCannotFitInMemoryBeforeAllocating) {
  const testing::MemoryLimit limit("68719476736");  // 64 GiB, whatever this machine has
  // Every tensor is within its own limit; all of them together need hundreds of GiB.
  auto r = RunPipeproof("run --kind dualpipe -r 8 -m 20 --hidden 4096 --seq 4096 "
                        "--micro-batch-size 4 --no-z3");
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_TRUE(Has(r.err, "this run needs at least")) << r.err;
  EXPECT_TRUE(Has(r.err, "GiB is available")) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(RunCommandTest, BadUsageExitsTwoWithTheReason) {
  struct Case {
    std::string args, says;
  };
  for (const Case& c : std::vector<Case>{
           {"run", "run needs a schedule"},
           {"run --kind dualpipe -r 3 -m 8", "even number of ranks"},
           {"run --kind 1f1b -r 3 -m 4 --corrupt swap", "--corrupt swap needs a unit"},
           {"run --kind 1f1b -r 3 -m 4 --kill-rank 3", "--kill-rank 3"},
           {"run --kind 1f1b -r 3 -m 4 --delay gauss:1ms", "the distribution must be"},
           {"run --kind 1f1b -r 3 -m 4 --straggler 1:0.5", "slowdown factor"},
           {"run --kind 1f1b -r 3 -m 4 --hidden 0", "--hidden: must be an integer from 1"},
           {"run --kind 1f1b -r 3 -m 4 --exact --tolerance", "exclude each other"},
           {"run --kind 1f1b -r 3 -m 4 --replay nowhere.json", "nowhere.json: error: cannot read"},
           {"run --kind 1f1b -r 3 -m 4 --replay nowhere.json --shuffle", "--replay takes every fault"},
           {"run --kind 1f1b -r 3 -m 4 --corrupt melt", "corrupt"},
       }) {
    auto r = RunPipeproof(c.args);
    EXPECT_EQ(r.status, 2) << c.args << "\n" << r.out << r.err;
    EXPECT_TRUE(Has(r.err, c.says)) << c.args << "\n" << r.err;
  }
}

TEST(RunCommandTest, NegativeControlsAreCaughtAndNamed) {
  auto r = RunPipeproof("run --kind dualpipe -r 4 -m 8 --corrupt bitflip --seed 2" + kSmall);
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_TRUE(Has(r.out, "negative control: bitflip of bit")) << r.out;
  EXPECT_TRUE(Has(r.out, "caught, the results differ from the reference")) << r.out;
  EXPECT_TRUE(Has(r.out, "linear")) << r.out;

  r = RunPipeproof("run --kind dualpipev -r 3 -m 6 --corrupt swap" + kSmall);
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_TRUE(Has(r.out, "negative control: swap of messages")) << r.out;

  for (const std::string control : {"--corrupt drop", "--kill-rank 1"}) {
    r = RunPipeproof("run --kind 1f1b -r 3 -m 5 --timeout 0.3 --flight-tail 4 " + control + kSmall);
    EXPECT_EQ(r.status, 3) << control << "\n" << r.out << r.err;
    EXPECT_TRUE(Has(r.err, "hang: no rank has made progress")) << r.err;
    for (int rank = 0; rank < 3; ++rank) EXPECT_TRUE(Has(r.err, "rank " + std::to_string(rank) + ": ")) << r.err;
    EXPECT_TRUE(Has(r.err, "last 4 events")) << r.err;
    EXPECT_TRUE(Has(r.err, "caught, the run hung and the watchdog stopped it")) << r.err;
    EXPECT_TRUE(Has(r.err, "replay these faults exactly")) << r.err;
  }
}

TEST(RunCommandTest, ASavedPlanReplaysExactly) {
  const std::string plan = Temp("plan.json"), a = Temp("a.json"), b = Temp("b.json");
  auto r = RunPipeproof("run --kind dualpipev -r 2 -m 5 --delay heavy:80us --shuffle --poison --seed 9 --save-plan " +
                        plan + " --report " + a + kSmall);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  r = RunPipeproof("run --kind dualpipev -r 2 -m 5 --replay " + plan + " --report " + b + kSmall);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const auto ja = nlohmann::json::parse(ReadWhole(a)), jb = nlohmann::json::parse(ReadWhole(b));
  EXPECT_EQ(ja["faults"], jb["faults"]);
  EXPECT_NE(ja["faults"], "no faults\n");
  // A plan drawn for one schedule does not replay on another.
  r = RunPipeproof("run --kind dualpipev -r 2 -m 6 --replay " + plan + kSmall);
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_TRUE(Has(r.err, "drawn for another run")) << r.err;
  // A failing run's plan replays to the same failure.
  r = RunPipeproof("run --kind dualpipe -r 2 -m 4 --corrupt bitflip --seed 5 --save-plan " + plan + kSmall);
  EXPECT_EQ(r.status, 1);
  r = RunPipeproof("run --kind dualpipe -r 2 -m 4 --replay " + plan + kSmall);
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(Has(r.out, "negative control: bitflip")) << r.out;
}

// --device cuda: on a GPU, the run goes over the streams transport and matches; without one (or
// in a build without CUDA) it is refused as bad usage, before anything runs.
TEST(RunCommandTest, DeviceCudaRunsOnTheStreamsTransportOrIsRefused) {
  auto r = RunPipeproof("run --kind dualpipe -r 4 -m 8 --device cuda --dtype f32" + kSmall);
  if (r.status == 0) {
    EXPECT_TRUE(Has(r.out, "on streams")) << r.out;
    EXPECT_TRUE(Has(r.out, "bit for bit")) << r.out;
  } else {
    EXPECT_EQ(r.status, 2) << r.out << r.err;
    EXPECT_TRUE(Has(r.err, "--device cuda: ")) << r.err;
    EXPECT_TRUE(Has(r.err, "no usable GPU") || Has(r.err, "built without CUDA")) << r.err;
    EXPECT_EQ(r.out, "");
  }
  // Combinations that never work, GPU or not.
  for (const std::string& args : {std::string(" --device cuda"),  // f64 is the default dtype
                                  std::string(" --dtype bf16"), std::string(" --device cuda --dtype f32 --transport mpi"),
                                  std::string(" --transport streams"), std::string(" --transport nccl")}) {
    r = RunPipeproof("run --kind dualpipe -r 2 -m 4" + kSmall + args);
    EXPECT_EQ(r.status, 2) << args << "\n" << r.out << r.err;
    EXPECT_TRUE(Has(r.err, "--device cuda") || Has(r.err, "--dtype")) << args << "\n" << r.err;
  }
}

}  // namespace
}  // namespace pipeproof
