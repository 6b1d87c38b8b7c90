// `pipeproof fuzz` as a user runs it: refusals before the first case, the planted bug found and
// its printed replay command reproducing it, clean campaigns, bad usage.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>

#include "cli/command_test_util.h"
#include "exec/memory_limit_test_util.h"

namespace pipeproof {
namespace {

using testing::RunCommand;
using testing::RunPipeproof;
using testing::ScratchPath;

using testing::Has;
using testing::ScratchDir;

// Without CUDA or a GPU (as here when no GPU is present) a GPU campaign is refused before it starts.
TEST(FuzzCommandTest, DeviceCudaIsRefusedWithoutAGpuAndBf16WithoutCuda) {
  testing::CommandOutput r = RunPipeproof("fuzz --dtype bf16 -n 1");
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_TRUE(Has(r.err, "add --device cuda")) << r.err;
  r = RunPipeproof("fuzz --device cuda --dtype f32 --transport mpi -n 1");
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  r = RunPipeproof("fuzz --device cuda --dtype f32 -n 2 --seed 3 -q");
  if (r.status != 0) {
    EXPECT_EQ(r.status, 2) << r.out << r.err;
    EXPECT_TRUE(Has(r.err, "no usable GPU") || Has(r.err, "built without CUDA")) << r.err;
  } else {
    EXPECT_TRUE(Has(r.out, "streams transport")) << r.out;
  }
}

// The largest cases the limits allow are checked against the memory before the first case.
TEST(FuzzCommandTest, ACampaignWhoseCasesCannotFitInMemoryIsRefusedBeforeItStarts) {
  const testing::MemoryLimit limit("68719476736");  // 64 GiB, whatever this machine has
  testing::CommandOutput r =
      RunPipeproof("fuzz -n 1 --max-ranks 8 --hidden 4096 --seq 4096 --micro-batch-size 4");
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_TRUE(Has(r.err, "this run needs at least")) << r.err;
  EXPECT_FALSE(Has(r.out, "cases")) << r.out;
}

// The same through the binary, as a user runs it: `pipeproof fuzz` finds the planted bug, prints
// one replay command, and that command, run as printed, exits 1 with the mismatch.
TEST(FuzzCommandTest, PrintsAReplayCommandThatReproducesThePlantedBug) {
  const std::string dir = ScratchDir("cli");
  const std::string summary = dir + "/summary.json";
  const testing::CommandOutput r = RunPipeproof("fuzz --plant release-send-early -n 50 --seed 4 --replay-checks 0 --out " +
                                                dir + " --summary " + summary);
  ASSERT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_TRUE(Has(r.out, "PLANTED EXECUTOR BUG release-send-early")) << r.out;
  EXPECT_TRUE(Has(r.out, "FAILURE in case")) << r.out;
  const size_t at = r.out.find("reproduce with:\n  ");
  ASSERT_NE(at, std::string::npos) << r.out;
  const size_t start = at + std::string("reproduce with:\n  ").size();
  const std::string command = r.out.substr(start, r.out.find('\n', start) - start);
  // The planted bug is a race: a replay on a loaded machine (ctest -j) may lose it once.
  testing::CommandOutput replay;
  for (int attempt = 0; attempt < 3 && replay.status != 1; ++attempt) replay = RunCommand(command);
  EXPECT_EQ(replay.status, 1) << command << "\n" << replay.out << replay.err;
  EXPECT_TRUE(Has(replay.out, "MISMATCH")) << replay.out;
  EXPECT_TRUE(Has(replay.out, "PLANTED EXECUTOR BUG: release-send-early")) << replay.out;
  const nlohmann::json j = nlohmann::json::parse(testing::ReadWhole(summary));
  EXPECT_EQ(j["failures"], 1);
  EXPECT_EQ(j["planted_bug"], "release-send-early");
  EXPECT_EQ(j["failure_reports"][0]["replay"], command);
  EXPECT_EQ(j["failure_reports"][0]["minimal"]["exit"], 1);
}

TEST(FuzzCommandTest, ACleanCampaignExitsZeroAndBadUsageTwo) {
  const std::string summary = ScratchPath("clean-summary.json");
  testing::CommandOutput r = RunPipeproof("fuzz -n 8 --seed 2 --summary " + summary);
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(Has(r.out, "fuzz: 8 cases")) << r.out;  // progress lines: stdout is not a terminal
  EXPECT_TRUE(Has(r.out, "0 failures")) << r.out;
  EXPECT_EQ(nlohmann::json::parse(testing::ReadWhole(summary))["cases"], 8);
  r = RunPipeproof("fuzz --time 0.5s --seed 3 -q");
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(Has(r.out, "stopped by time")) << r.out;
  EXPECT_EQ(RunPipeproof("fuzz --time soon").status, 2);
  EXPECT_EQ(RunPipeproof("fuzz --kinds nopipe -n 1").status, 2);
  EXPECT_EQ(RunPipeproof("fuzz --plant nothing -n 1").status, 2);
  // The planted-bug self-test is in the help, with the bugs it can plant.
  r = RunPipeproof("fuzz --help");
  EXPECT_TRUE(Has(r.out, "--plant")) << r.out;
  EXPECT_TRUE(Has(r.out, "release-send-early")) << r.out;
}

// A planted-bug variable that names no bug is bad usage, not a silent clean run.
TEST(PlantedBugTest, AVariableThatNamesNoPlantedBugIsRefused) {
  const testing::CommandOutput r = RunCommand("PIPEPROOF_PLANTED_BUG=bogus " + std::string(PIPEPROOF_BINARY) +
                                              " run --kind 1f1b -r 2 -m 2 --hidden 8 --seq 4");
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_TRUE(Has(r.err, "not a planted bug")) << r.err;
}

// A launcher that cannot start is bad usage, found before the first case, not a bug to shrink.
TEST(FuzzCommandTest, ALauncherThatCannotStartIsRefusedBeforeTheFirstCase) {
  const testing::CommandOutput r = RunPipeproof("fuzz --transport mpi --launcher garbage -n 1");
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_TRUE(Has(r.err, "--launcher 'garbage': 'garbage' cannot be started")) << r.err;
  EXPECT_FALSE(Has(r.out, "FAILURE")) << r.out;
}

}  // namespace
}  // namespace pipeproof
