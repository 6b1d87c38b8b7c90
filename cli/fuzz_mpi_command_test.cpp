// `pipeproof fuzz --transport mpi`: every case runs as `mpirun -np R pipeproof run --transport
// mpi ... --replay PLAN`; a planted bug is found there too, and the printed replay command (an
// mpirun command line) reproduces it. CTest label `mpi`.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "cli/command_test_util.h"

namespace pipeproof {
namespace {

const std::string kLauncher =
    std::string(" --launcher '") + PIPEPROOF_MPIEXEC + " --allow-run-as-root --oversubscribe -np {ranks}'";

using testing::Has;

TEST(FuzzMpiTest, CasesRunUnderMpirunAndPass) {
  const std::string summary = testing::ScratchPath("mpi-summary.json");
  const testing::CommandOutput r =
      testing::RunPipeproof("fuzz --transport mpi -n 3 --seed 5 --max-ranks 3 --summary " + summary + kLauncher);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const nlohmann::json j = nlohmann::json::parse(testing::ReadWhole(summary));
  EXPECT_EQ(j["transport"], "mpi");
  EXPECT_EQ(j["cases"], 3);
  EXPECT_EQ(j["failures"], 0);
}

TEST(FuzzMpiTest, APlantedBugIsFoundAndItsMpirunReplayReproducesIt) {
  const std::string dir = testing::ScratchPath("mpi-plans");
  const testing::CommandOutput r = testing::RunPipeproof(
      "fuzz --transport mpi --plant release-send-early -n 20 --seed 3 --max-ranks 3 --replay-checks 3 --out " + dir +
      kLauncher);
  ASSERT_EQ(r.status, 1) << r.out << r.err;
  // The planted bug is a race that a loaded machine (ctest -j) can hide from one replay: one of
  // three must show it, and none may be counted that did not.
  EXPECT_TRUE(std::regex_search(r.out, std::regex("reproduced it [123] of 3 times"))) << r.out;
  const size_t at = r.out.find("reproduce with:\n  ");
  ASSERT_NE(at, std::string::npos) << r.out;
  const size_t start = at + std::string("reproduce with:\n  ").size();
  const std::string command = r.out.substr(start, r.out.find('\n', start) - start);
  EXPECT_TRUE(Has(command, "--allow-run-as-root --oversubscribe -np 2 ")) << command;
  EXPECT_TRUE(Has(command, "run --transport mpi ")) << command;
  // The planted bug is a race: a replay on a loaded machine (ctest -j) may lose it once.
  testing::CommandOutput replay;
  for (int attempt = 0; attempt < 3 && replay.status != 1; ++attempt) replay = testing::RunCommand(command);
  EXPECT_EQ(replay.status, 1) << command << "\n" << replay.out << replay.err;
}

}  // namespace
}  // namespace pipeproof
