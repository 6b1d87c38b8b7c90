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
