// pipeproof repair: exit statuses, the output in the input's format (comments kept), JSON, and
// refusals.

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/command_test_util.h"
#include "schedule/formats.h"
#include "verify/repair.h"
#include "verify/repair_test_util.h"

namespace pipeproof {
namespace {

using testing::RunPipeproof;

std::string Data(const std::string& name) { return std::string(PIPEPROOF_TESTDATA_DIR) + "/" + name; }

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(RepairCli, RepairsAPpsFileKeepingItsCommentsAndHeader) {
  const std::string out = testing::ScratchPath("repaired-172668.pps");
  auto r = RunPipeproof("repair " + Data("verify/pytorch_172668.pps") + " -o " + out);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("before: FAILED (deadlock)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("why: deadlock: breaks the cycle"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("verdict: sound"), std::string::npos) << r.out;
  const std::string repaired = ReadAll(out);
  EXPECT_EQ(repaired.rfind("# pytorch/pytorch issue 172668", 0), 0u) << repaired;  // comments first, as written
  EXPECT_NE(repaired.find("\nplacement loop\n"), std::string::npos) << repaired;
  EXPECT_EQ(RunPipeproof("verify " + out).status, 0);
  // Sound now: a second repair has nothing to do.
  r = RunPipeproof("repair " + out);
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("nothing to repair"), std::string::npos) << r.out;
}

TEST(RepairCli, PyTorchCsvInPyTorchCsvOut) {
  const std::string in = Data("peers/pytorch/torch-2.15/generated/zbv_2rank_4stage_4mb_defer_runtime.csv");
  const std::string out = testing::ScratchPath("repaired-zbv.csv");
  auto r = RunPipeproof("repair " + in + " --json -o " + out);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["outcome"], "repaired");
  EXPECT_FALSE(j["before"]["ok"].get<bool>());
  EXPECT_TRUE(j["after"]["ok"].get<bool>());
  // The file written differs from the input by the edits counted, fewer than re-lowering's.
  const Schedule before = ReadScheduleFile(in), after = ReadScheduleFile(out);
  EXPECT_EQ(j["edit_count"].get<size_t>(), CommunicationDiff(before, after).size());
  EXPECT_EQ(j["relowered_edits"].get<int>(), testing::RelowerEdits(before));
  EXPECT_LE(j["edit_count"].get<int>(), testing::RelowerEdits(before));
  for (const auto& e : j["edits"]) EXPECT_FALSE(e["reason"].get<std::string>().empty()) << e;
  const std::string csv = ReadAll(out);
  EXPECT_EQ(csv.find("rank"), std::string::npos) << csv;  // PyTorch's form: rows of actions
  EXPECT_NE(csv.find("WAIT_SEND_F"), std::string::npos) << csv;  // PyTorch's runtime actions kept
  EXPECT_NE(csv.find("UNSHARD"), std::string::npos) << csv;
  EXPECT_EQ(RunPipeproof("verify " + out).status, 0);
}

TEST(RepairCli, StdoutTakesTheScheduleAndStderrTheReport) {
  auto r = RunPipeproof("repair " + Data("verify/pytorch_109401.pps") + " -o -");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("rank 0:"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("verdict: sound"), std::string::npos) << r.err;
}

// Negative control: a compute order that no communication can run is not "repaired".
TEST(RepairCli, AComputeOrderThatCannotRunExitsOneAndWritesNothing) {
  const std::string in = testing::ScratchPath("cannot-run.pps");
  std::ofstream(in) << "ranks 2\nmicrobatches 1\nrank 0: 0B0 0F0\nrank 1: 1F0 1B0\n";
  const std::string out = testing::ScratchPath("cannot-run-out.pps");
  std::remove(out.c_str());
  auto r = RunPipeproof("repair " + in + " -o " + out);
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("cannot repair"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rank 0 [0] 0B0 waits for"), std::string::npos) << r.out;
  EXPECT_FALSE(std::ifstream(out).good());
}

TEST(RepairCli, BadInputAndFlagsExitTwo) {
  EXPECT_EQ(RunPipeproof("repair " + testing::ScratchPath("no-such-file.pps")).status, 2);
  auto r = RunPipeproof("repair " + Data("verify/pytorch_109401.pps") + " -o " + testing::ScratchPath("x.json"));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("repair writes the input's format (pps)"), std::string::npos) << r.err;
  EXPECT_EQ(RunPipeproof("repair " + Data("verify/pytorch_109401.pps") + " --streams ring").status, 2);
}

}  // namespace
}  // namespace pipeproof
