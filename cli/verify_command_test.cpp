// pipeproof verify / simulate: exit statuses, text and JSON, PyTorch's files, bad input.

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/command_test_util.h"
#include "verify/verify.h"

namespace pipeproof {
namespace {

using testing::RunPipeproof;

std::string Peer(const std::string& name) {
  return std::string(PIPEPROOF_TESTDATA_DIR) + "/peers/pytorch/" + name;
}
std::string Data(const std::string& name) {
  return std::string(PIPEPROOF_TESTDATA_DIR) + "/verify/" + name;
}
std::string Temp(const std::string& name, const std::string& text) {
  const std::string path = testing::ScratchPath(name);
  std::ofstream(path) << text;
  return path;
}

// A headerless DualPipe order read with guessed topology fails its structure; the hint names the
// kind that fits. A file that no kind fits gets no hint.
TEST(VerifyCli, AHeaderlessFileThatAKindFitsGetsTheHint) {
  const std::string csv = testing::ScratchPath("dp-hint.csv");
  ASSERT_EQ(RunPipeproof("generate dualpipe -r 4 -m 8 -o " + csv).status, 0);
  auto r = RunPipeproof("verify --no-z3 " + csv);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("hint: the file has no header"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("read as --kind dualpipe its structure checks out"), std::string::npos) << r.err;
  EXPECT_EQ(RunPipeproof("verify --no-z3 --kind dualpipe " + csv).status, 0);
  r = RunPipeproof("run --no-z3 --hidden 8 --seq 4 " + csv);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("read as --kind dualpipe its structure checks out"), std::string::npos) << r.err;
  r = RunPipeproof("verify --no-z3 " + Temp("no-kind.csv", "0F0,0F0,0B0\n"));
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err.find("hint"), std::string::npos) << r.err;
}

TEST(VerifyCli, GeneratedScheduleVerifies) {
  const std::string path = Temp("dp.pps", "");
  ASSERT_EQ(RunPipeproof("generate dualpipe -r 4 -m 8 -o " + path).status, 0);
  const auto r = RunPipeproof("verify " + path);
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  for (const char* name :
       {"structure", "dependencies", "matching", "deadlock", "memory", "timing"}) {
    EXPECT_NE(r.out.find(name), std::string::npos) << name;
  }
  EXPECT_NE(r.out.find("verdict: sound"), std::string::npos);
}

TEST(VerifyCli, JsonHasTheDesignedShape) {
  const auto r = RunPipeproof("verify --json " + Data("pytorch_172668.pps"));
  EXPECT_EQ(r.status, 1) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ok"], false);
  ASSERT_EQ(j["checks"].size(), 6u);
  const std::vector<std::string> names = {"structure", "dependencies", "matching",
                                          "deadlock",  "memory",       "timing"};
  for (size_t k = 0; k < names.size(); ++k) {
    EXPECT_EQ(j["checks"][k]["name"], names[k]);
    EXPECT_TRUE(j["checks"][k]["ok"].is_boolean());
    EXPECT_TRUE(j["checks"][k]["message"].is_string());
  }
  const auto& deadlock = j["checks"][3];
  EXPECT_EQ(deadlock["ok"], false);
  ASSERT_EQ(deadlock["cycle"].size(), 4u);
  for (const auto& step : deadlock["cycle"]) {
    EXPECT_TRUE(step["rank"].is_number_integer());
    EXPECT_TRUE(step["index"].is_number_integer());
    EXPECT_TRUE(step["action"].is_string());
  }
  EXPECT_EQ(j["checks"][4]["peak"].size(), 2u);
  EXPECT_EQ(j["checks"][5]["skipped"], true);
}

TEST(VerifyCli, TimingJsonFromVerifyAndSimulateAgree) {
  const std::string path = Temp("dp6.pps", "");
  ASSERT_EQ(RunPipeproof("generate dualpipe -r 6 -m 24 -o " + path).status, 0);
  const std::string costs = " --cost F=2,B=3,W=1,I=2,FB=4.2";
  const auto v = RunPipeproof("verify --json --no-z3" + costs + " " + path);
  const auto s = RunPipeproof("simulate --json" + costs + " " + path);
  ASSERT_EQ(v.status, 0) << v.out << v.err;
  ASSERT_EQ(s.status, 0) << s.err;
  const auto timing = nlohmann::json::parse(v.out)["checks"][5];
  const auto simulated = nlohmann::json::parse(s.out);
  for (const char* key : {"name", "makespan", "busy", "bubble", "bubble_ratio", "costs"}) {
    EXPECT_EQ(timing[key], simulated[key]) << key;
  }
  EXPECT_EQ(simulated["busy"].size(), 6u);
  double worst = 0;
  for (const auto& b : simulated["bubble"]) worst = std::max(worst, b.get<double>());
  EXPECT_NEAR(worst, (6 / 2 - 1) * (4.2 + 3 - 3 * 1), 1e-6);
}

TEST(VerifyCli, PyTorchFilesVerify) {
  const auto v = RunPipeproof("verify " + Peer("dualpipev_4rank_10mb.csv") + " --placement v");
  EXPECT_EQ(v.status, 0) << v.out << v.err;
  EXPECT_NE(v.out.find("compute-only input: verified after lowering"), std::string::npos);
  const auto with_kind =
      RunPipeproof("verify " + Peer("dualpipev_4rank_10mb.csv") + " --kind dualpipev");
  EXPECT_EQ(with_kind.status, 0) << with_kind.out << with_kind.err;
  EXPECT_NE(with_kind.out.find("within the bound 9 (dualpipev: S_route + 1 = 8 + 1)"),
            std::string::npos)
      << with_kind.out;
  for (const char* zb : {"zb1p_2rank_2stagep_compute.csv", "zb1p_2rank_2stagep_comms.csv"}) {
    const auto r = RunPipeproof("verify --legacy-bw " + Peer(zb));
    EXPECT_EQ(r.status, 0) << zb << "\n" << r.out << r.err;
    EXPECT_EQ(RunPipeproof("verify " + Peer(zb)).status, 2) << zb << " needs --legacy-bw";
  }
}

TEST(VerifyCli, ModelsAndFlags) {
  const std::string deadlock = Data("pytorch_172668.pps");
  EXPECT_EQ(RunPipeproof("verify " + deadlock).status, 1);
  EXPECT_EQ(RunPipeproof("verify --comm eager " + deadlock).status, 0);
  EXPECT_EQ(RunPipeproof("verify --no-z3 " + Data("pytorch_172668_grouped.pps")).status, 0);
  const auto tight =
      RunPipeproof("verify --max-activations 1 " + Data("pytorch_172668_grouped.pps"));
  EXPECT_EQ(tight.status, 1);
  EXPECT_NE(tight.out.find("exceeds the bound 1"), std::string::npos) << tight.out;
  EXPECT_EQ(RunPipeproof("simulate " + deadlock).status, 1);
  const auto latency = RunPipeproof("simulate --latency 0.5 " + Data("pytorch_172668_grouped.pps"));
  EXPECT_EQ(latency.status, 0) << latency.err;
  EXPECT_NE(latency.out.find("latency=0.5"), std::string::npos) << latency.out;
}

TEST(VerifyCli, BadInputIsExitTwo) {
  const std::string good = Data("pytorch_172668_grouped.pps");
  struct Case {
    std::string args, says;
  };
  const std::vector<Case> cases = {
      {"verify /nonexistent/file.pps", "cannot read"},
      {"verify " + Temp("garbage.pps", "ranks 2\nrank 0: 0X0\n"), "error:"},
      {"verify " + Temp("empty.csv", ""), "error"},
      {"verify --cost F=abc " + good, "not a non-negative number"},
      {"verify --cost Q=1 " + good, "unknown cost"},
      {"verify --comm tcp " + good, "tcp"},
      {"verify --max-activations -3 " + good, "--max-activations: must be an integer from 0"},
      {"simulate --cost F=-1 " + good, "non-negative"},
      {"verify", "FILE"},
  };
  for (const Case& c : cases) {
    const auto r = RunPipeproof(c.args);
    EXPECT_EQ(r.status, 2) << c.args << "\n" << r.out << r.err;
    EXPECT_NE((r.out + r.err).find(c.says), std::string::npos) << c.args << "\n" << r.err;
  }
}

TEST(VerifyCli, StructurallyBrokenFileFailsStructureNotTheTool) {
  const auto r = RunPipeproof(
      "verify --json " +
      Temp("broken.pps", "ranks 2\nstages 2\nmicrobatches 1\nrank 0: 0F0 0F9 1B0\nrank 1:\n"));
  EXPECT_EQ(r.status, 1) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["checks"][0]["ok"], false);
  for (int k = 1; k < 6; ++k) EXPECT_EQ(j["checks"][k]["skipped"], true);
  EXPECT_EQ(RunPipeproof("simulate " +
                         Temp("broken2.pps", "ranks 2\nstages 2\nmicrobatches 1\nrank 0: 0F0\n"))
                .status,
            2);
}

}  // namespace
}  // namespace pipeproof
