// The pipeproof command as a user runs it: outputs, exit statuses, error messages.
#include <gtest/gtest.h>

#include <sstream>

#include "cli/command_test_util.h"
#include "schedule/test_util.h"

namespace pipeproof {
namespace {

using testing::RunPipeproof;
using testing::TestdataPath;

std::string RankLines(const std::string& text) {
  std::istringstream in(text);
  std::string out;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("rank ", 0) == 0 && line.find(':') != std::string::npos) out += line + "\n";
  }
  return out;
}

TEST(GenerateCommandTest, DualPipePrintsTheReferenceOrder) {
  auto r = RunPipeproof("generate dualpipe --ranks 4 --microbatches 8");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(RankLines(r.out), testing::ReadTestdata("peers/dualpipe-reference/dualpipe-r4-m8.txt"));
  r = RunPipeproof("generate dualpipev -r 2 -m 5");
  EXPECT_EQ(RankLines(r.out), testing::ReadTestdata("peers/dualpipe-reference/dualpipev-r2-m5.txt"));
}

TEST(GenerateCommandTest, ComputeOnlyCsvEqualsPyTorchsFixture) {
  auto r = RunPipeproof("generate dualpipev -r 4 -m 10 --format csv-compute");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, testing::ReadTestdata("peers/pytorch/dualpipev_4rank_10mb.csv"));
}

TEST(GenerateCommandTest, InvalidSizeExitsTwoNamingTheRule) {
  auto r = RunPipeproof("generate dualpipe --ranks 3 --microbatches 12");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("error: dualpipe needs an even number of ranks"), std::string::npos) << r.err;
  r = RunPipeproof("generate dualpipe --ranks 4");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--microbatches"), std::string::npos) << r.err;
  r = RunPipeproof("generate zigzag -r 4 -m 8");
  EXPECT_EQ(r.status, 2);
  r = RunPipeproof("generate 1f1b -r 99999999999 -m 8");
  EXPECT_EQ(r.status, 2);
}

// What generate and convert write reads back: the format follows the file's extension, a format
// that contradicts it is refused, and so is a schedule larger than the readers take.
TEST(GenerateCommandTest, WritesOnlyWhatReadsBack) {
  const std::string csv = testing::ScratchPath("g.csv"), json = testing::ScratchPath("g.json");
  ASSERT_EQ(RunPipeproof("generate dualpipe -r 4 -m 8 -o " + csv).status, 0);
  EXPECT_EQ(RunPipeproof("verify --no-z3 --kind dualpipe " + csv).status, 0);
  ASSERT_EQ(RunPipeproof("convert " + csv + " --kind dualpipe -o " + json).status, 0);
  EXPECT_EQ(RunPipeproof("verify --no-z3 " + json).status, 0);
  auto r = RunPipeproof("generate 1f1b -r 4 -m 8 -f pps -o " + csv);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("-f pps into"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("name the file .pps"), std::string::npos) << r.err;
  EXPECT_EQ(RunPipeproof("convert " + json + " --to json -o " + csv).status, 2);
  EXPECT_EQ(RunPipeproof("generate 1f1b -r 4 -m 8 -f csv-compute -o " + csv).status, 0);
  r = RunPipeproof("generate 1f1b -r 8 -m 96000");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("more than a schedule may hold (4194304)"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
  r = RunPipeproof("run --kind 1f1b -r 8 -m 96000");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("more than a schedule may hold"), std::string::npos) << r.err;
}

TEST(ShowCommandTest, ReadsEveryPeerFile) {
  for (const char* args : {"peers/pytorch/dualpipev_4rank_10mb.csv",
                           "peers/pytorch/zb1p_2rank_2stagep_compute.csv --legacy-bw",
                           "peers/pytorch/zb1p_2rank_2stagep_comms.csv --legacy-bw",
                           "peers/dualpipe-reference/dualpipe-r4-m8.txt --kind dualpipe",
                           "peers/dualpipe-reference/dualpipev-r2-m5.txt"}) {
    auto r = RunPipeproof("show " + TestdataPath(args));
    EXPECT_EQ(r.status, 0) << args << ": " << r.err;
    EXPECT_NE(r.out.find("Step 00:"), std::string::npos) << args << "\n" << r.out;
  }
}

TEST(ShowCommandTest, LegacyFileWithoutTheSwitchIsRefusedWithAHint) {
  auto r = RunPipeproof("show " + TestdataPath("peers/pytorch/zb1p_2rank_2stagep_compute.csv"));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("zb1p_2rank_2stagep_compute.csv:1:22: error:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--legacy-bw"), std::string::npos) << r.err;
}

TEST(ShowCommandTest, BadFilesExitTwo) {
  auto r = RunPipeproof("show " + testing::ScratchPath("no-such-file.pps"));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("cannot read"), std::string::npos) << r.err;
  r = RunPipeproof("show /bin/sh");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("/bin/sh:"), std::string::npos) << r.err;
  r = RunPipeproof("show " + ::testing::TempDir());
  EXPECT_EQ(r.status, 2) << r.err;
}

TEST(ConvertCommandTest, FormatsRoundTripThroughFiles) {
  const std::string json = testing::ScratchPath("d.json"), csv = testing::ScratchPath("d.csv");
  ASSERT_EQ(RunPipeproof("generate dualpipe -r 4 -m 8 -f json -o " + json).status, 0);
  auto pps = RunPipeproof("convert " + json + " --to pps");
  ASSERT_EQ(pps.status, 0) << pps.err;
  EXPECT_EQ(pps.out, RunPipeproof("generate dualpipe -r 4 -m 8").out);
  ASSERT_EQ(RunPipeproof("convert " + json + " --to csv -o " + csv).status, 0);
  auto back = RunPipeproof("convert " + csv + " --kind dualpipe --to pps");
  EXPECT_EQ(back.out, pps.out);
}

TEST(ConvertCommandTest, LowersComputeOnlySchedules) {
  auto r = RunPipeproof("convert " + TestdataPath("peers/pytorch/dualpipev_4rank_10mb.csv") +
                        " --lower --to pps");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("SEND_F"), std::string::npos);
  r = RunPipeproof("convert " + TestdataPath("peers/pytorch/zb1p_2rank_2stagep_comms.csv") +
                   " --legacy-bw --lower --to pps");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("already has SEND/RECV"), std::string::npos) << r.err;
}

// --streams as a user gives it: the layout decides the verdict (pytorch/pytorch issue 172668
// hangs on one stream per rank and runs on one per directed edge), run executes where it is sound
// and, with --allow-deadlock, hangs where it is not; fuzz says the layout and keeps it in its
// replay commands; the NCCL transport refuses pair and edge before anything runs.
TEST(StreamsFlagTest, TheLayoutDecidesVerifiesRunsAndFuzzes) {
  const std::string cross = TestdataPath("verify/pytorch_172668.pps");
  auto r = RunPipeproof("verify " + cross + " --no-z3");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("--streams edge runs to its end"), std::string::npos) << r.out;
  EXPECT_EQ(RunPipeproof("verify " + cross + " --no-z3 --streams edge").status, 0);
  EXPECT_EQ(RunPipeproof("verify " + cross + " --streams ring").status, 2);

  r = RunPipeproof("run " + cross + " --no-z3 --hidden 8 --seq 4 --streams edge");
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("on threads (--streams edge)"), std::string::npos) << r.out;
  EXPECT_EQ(RunPipeproof("run " + cross + " --no-z3 --hidden 8 --seq 4").status, 2);
  r = RunPipeproof("run " + cross + " --no-z3 --hidden 8 --seq 4 --allow-deadlock --timeout 0.3");
  EXPECT_EQ(r.status, 3) << r.out << r.err;
  EXPECT_NE(r.err.find("running it anyway (--allow-deadlock)"), std::string::npos) << r.err;

  r = RunPipeproof("fuzz -n 2 --seed 3 --kinds 1f1b --streams pair");
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("threads transport (--streams pair)"), std::string::npos) << r.out;

  for (const std::string command : {"run --kind 1f1b -r 2 -m 2", "fuzz -n 1"}) {
    r = RunPipeproof(command + " --transport nccl --streams edge");
    EXPECT_EQ(r.status, 2) << command;
    EXPECT_NE(r.err.find("the NCCL transport has one per rank"), std::string::npos)
        << command << "\n" << r.err;
  }
}

// Each command line exits 2 within seconds, its stderr saying the given words.
template <size_t N>
void ExpectRefused(const std::pair<std::string, std::string> (&cases)[N]) {
  for (const auto& [args, message] : cases) {
    const auto r = RunPipeproof(args);
    EXPECT_EQ(r.status, 2) << args << "\n" << r.out << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << "\n" << r.err;
    EXPECT_LT(r.seconds, 10) << args;
  }
}

// Every numeric flag has a range, said in its help and in the refusal: no wrapped seeds, no
// memory-eating sizes, no nan or inf tolerances.
TEST(FlagRangeTest, OutOfRangeNumbersAreRefusedNamingTheFlagAndTheRule) {
  const std::string run = "run --kind 1f1b -r 2 -m 2 --hidden 8 --seq 4 ";
  const std::pair<std::string, std::string> bad[] = {
      {run + "--seed -1", "--seed: must be an integer from 0 to 18446744073709551615"},
      {run + "--seed 18446744073709551616", "--seed: must be an integer from 0"},
      {run + "--model-seed -3", "--model-seed: must be an integer from 0"},
      {run + "--flight-tail 100000000", "--flight-tail: must be an integer from 1 to 4096"},
      {run + "--tolerance --rtol nan", "--rtol: must be a finite number, at least 0"},
      {run + "--tolerance --atol inf", "--atol: must be a finite number, at least 0"},
      {run + "--timeout nan", "--timeout: must be a number from 0.01 to 86400"},
      {run + "--kill-rank -1", "--kill-rank: must be an integer from 0"},
      {"run --kind 1f1b -r 0 -m 2", "--ranks: must be an integer from 1 to 4096"},
      {"run --kind 1f1b -r 2 -m 2 --hidden 0", "--hidden: must be an integer from 1"},
      {"generate 1f1b -r 2 -m 2.5", "--microbatches: must be an integer from 1"},
      {"fuzz -n 0", "--iterations: must be an integer from 1"},
      {"fuzz -n 1 --shrink-attempts 0", "--shrink-attempts: must be an integer from 1 to 1000"},
      {"fuzz -n 1 --controls 2", "--controls: must be a number from 0 to 1"},
      {"verify " + TestdataPath("verify/pytorch_172668.pps") + " --latency nan",
       "--latency: must be a finite number, at least 0"},
      {"verify " + TestdataPath("verify/pytorch_172668.pps") + " --max-activations -1",
       "--max-activations: must be an integer from 0"},
      {"diff a b --rtol -1", "--rtol: must be a finite number, at least 0"},
      {"diff a b --max-lines 1e9", "--max-lines: must be an integer from 0 to 1000000"},
  };
  ExpectRefused(bad);
  // The ranges are in the help.
  const auto help = RunPipeproof("run --help");
  EXPECT_NE(help.out.find("in 1..4096"), std::string::npos) << help.out;
  EXPECT_NE(help.out.find("in 0..2^64-1"), std::string::npos) << help.out;
}

// A generated kind's own options are refused for kinds that do not take them, and for a FILE.
TEST(FlagRangeTest, KindOptionsGoOnlyWithTheKindsThatTakeThem) {
  const std::pair<std::string, std::string> bad[] = {
      {"run --kind 1f1b -r 2 -m 2 --no-overlap", "--no-overlap applies to dualpipe and dualpipev, not to 1f1b"},
      {"generate zb1p -r 2 -m 2 --virtual-stages 3",
       "--virtual-stages applies to interleaved-1f1b, not to zb1p"},
      {"generate dualpipe -r 2 -m 4 --wait-sends",
       "--wait-sends applies to gpipe, 1f1b, interleaved-1f1b and zb1p, not to dualpipe"},
      {"run " + TestdataPath("verify/pytorch_172668.pps") + " --no-overlap",
       "cannot go with a schedule FILE"},
  };
  ExpectRefused(bad);
  EXPECT_EQ(RunPipeproof("generate interleaved-1f1b -r 2 -m 4 --virtual-stages 3").status, 0);
  EXPECT_EQ(RunPipeproof("generate dualpipev -r 2 -m 4 --no-overlap").status, 0);
  EXPECT_EQ(RunPipeproof("generate 1f1b -r 2 -m 4 --wait-sends").status, 0);
}

// A tolerance wide enough hides a flipped bit: the report says it may be the setting, not a bug
// in pipeproof.
TEST(FlagRangeTest, AControlMissedWithinAWideToleranceBlamesTheTolerance) {
  const auto r = RunPipeproof(
      "run --kind 1f1b -r 2 -m 2 --hidden 8 --seq 4 --tolerance --rtol 1e300 --atol 1e300 "
      "--corrupt bitflip -q");
  EXPECT_EQ(r.status, 3) << r.out << r.err;
  EXPECT_NE((r.out + r.err).find("NEGATIVE CONTROL NOT CAUGHT within the tolerance given"),
            std::string::npos)
      << r.out << r.err;
  EXPECT_EQ((r.out + r.err).find("FAULT IN PIPEPROOF"), std::string::npos) << r.out << r.err;
}

// A directory, a device or a missing file given where a file is read is named for what it is,
// at once: none of them is read without end.
TEST(InputFileTest, WhatIsNotAFileIsRefusedByNameInBoundedTime) {
  const std::string dir = ::testing::TempDir();
  const std::pair<std::string, std::string> bad[] = {
      {"verify " + dir, "this is a directory, not a schedule file"},
      {"verify /dev/zero", "this is a character device, not a schedule file"},
      {"run --kind 1f1b -r 2 -m 2 --replay " + dir, "this is a directory, not a fault plan file"},
      {"run --kind 1f1b -r 2 -m 2 --replay /dev/zero", "this is a character device, not a fault plan"},
      {"trace show /dev/zero", "this is a character device, not a trace file"},
      {"diff /dev/zero /dev/zero", "this is a character device, not a tensor dump"},
      {"diff /nonexistent/a /nonexistent/b", "/nonexistent/a: error: no such file"},
  };
  ExpectRefused(bad);
}

// A failed run leaves its fault plan only where the user asked (--save-plan, or beside
// --report); otherwise it says that the same command replays it, and writes nothing.
TEST(FailedRunPlanTest, ThePlanGoesWhereAskedAndNowhereElse) {
  const std::string run = "run --kind 1f1b -r 3 -m 5 --timeout 0.3 --corrupt drop --hidden 8 --seq 4 -q";
  auto r = RunPipeproof(run);
  EXPECT_EQ(r.status, 3) << r.out << r.err;
  EXPECT_NE(r.err.find("replay these faults exactly: the same command (its plan is drawn from --seed 1)"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("pipeproof-plan-"), std::string::npos) << r.err;
  const std::string report = testing::ScratchPath("failed.json");
  const std::string plan = testing::ScratchPath("failed.plan.json");
  r = RunPipeproof(run + " --report " + report);
  EXPECT_EQ(r.status, 3) << r.out << r.err;
  EXPECT_NE(r.err.find("--replay " + plan), std::string::npos) << r.err;
  EXPECT_NE(testing::ReadWhole(plan).find("pipeproof fault plan"), std::string::npos);
  std::remove(report.c_str());
  std::remove(plan.c_str());
}

TEST(FlagRangeTest, VersionAndTheMemoryLimitVariable) {
  auto r = RunPipeproof("--version");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("pipeproof ", 0), 0u) << r.out;
  r = testing::RunCommand("PIPEPROOF_MEMORY_LIMIT=abc " + std::string(PIPEPROOF_BINARY) +
                          " run --kind 1f1b -r 2 -m 2 --hidden 8 --seq 4");
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("PIPEPROOF_MEMORY_LIMIT='abc'"), std::string::npos) << r.err;
}

TEST(HelpTest, EverySubcommandHasHelp) {
  for (const char* sub : {"", "generate", "show", "convert"}) {
    auto r = RunPipeproof(std::string(sub) + " --help");
    EXPECT_EQ(r.status, 0) << sub << ": " << r.err;
    EXPECT_NE(r.out.find("Usage:"), std::string::npos) << sub;
  }
  EXPECT_EQ(RunPipeproof("no-such-command").status, 2);
  EXPECT_EQ(RunPipeproof("").status, 2);
}

}  // namespace
}  // namespace pipeproof
