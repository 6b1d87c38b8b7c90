// `pipeproof run --transport mpi` under real mpirun processes: bit-identical results, caught
// negative controls, and hangs or dead ranks that end every process with status 3 and the dump.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <regex>
#include <string>

#include "cli/command_test_util.h"

namespace pipeproof {
namespace {

using testing::CommandOutput;

const std::string kSmall = " --hidden 8 --seq 4 --micro-batch-size 2";

// mpirun as CI runs it: as root, more processes than cores.
CommandOutput Mpirun(int processes, const std::string& args) {
  return testing::RunCommand(std::string(PIPEPROOF_MPIEXEC) + " --allow-run-as-root --oversubscribe -np " +
                             std::to_string(processes) + " " + PIPEPROOF_BINARY + " run --transport mpi " + args);
}

using testing::Has;

TEST(MpiRunTest, SchedulesMatchBitForBitUnderFaults) {
  struct Case {
    int np;
    std::string args;
  };
  for (const Case& c : std::vector<Case>{
           {4, "--kind dualpipe -r 4 -m 8 --delay exp:100us --shuffle --poison --straggler 2:2 --seed 1"},
           {2, "--kind dualpipev -r 2 -m 5 --delay heavy:100us --shuffle --poison --seed 2"},
           {3, "--kind 1f1b -r 3 -m 5 --delay uniform:100us --poison --seed 3"},
           {2, "--kind interleaved-1f1b -r 2 -m 4 --dtype f32 --delay exp:50us --seed 4"},
       }) {
    const CommandOutput r = Mpirun(c.np, c.args + kSmall);
    EXPECT_EQ(r.status, 0) << c.args << "\n" << r.out << r.err;
    EXPECT_TRUE(Has(r.out, "bit for bit")) << c.args << "\n" << r.out;
    EXPECT_TRUE(Has(r.out, "on mpi (" + std::to_string(c.np) + " processes)")) << r.out;
  }
}

TEST(MpiRunTest, CorruptionsAreCaughtAsMismatches) {
  for (const std::string control : {"--corrupt bitflip", "--corrupt swap"}) {
    const CommandOutput r = Mpirun(4, "--kind dualpipe -r 4 -m 8 --seed 7 " + control + kSmall);
    EXPECT_EQ(r.status, 1) << control << "\n" << r.out << r.err;
    EXPECT_TRUE(Has(r.out, "caught, the results differ from the reference")) << r.out;
  }
}

// A dropped message or a dead rank leaves the others waiting forever inside their MPI waits; the
// watchdog must end every process with status 3 and print every rank's state.
TEST(MpiRunTest, DropsAndDeadRanksEndTheJobWithStatusThreeAndTheDump) {
  const double timeout = 1;
  for (const std::string control : {"--corrupt drop", "--kill-rank 2"}) {
    const CommandOutput r = Mpirun(4, "--kind dualpipe -r 4 -m 8 --timeout 1 --flight-tail 3 " + control + kSmall);
    EXPECT_EQ(r.status, 3) << control << "\n" << r.out << r.err;
    EXPECT_LT(r.seconds, timeout + 15) << control;
    EXPECT_TRUE(Has(r.err, "hang: no rank has made progress")) << r.err;
    for (int rank = 0; rank < 4; ++rank) EXPECT_TRUE(Has(r.err, "rank " + std::to_string(rank) + ": ")) << r.err;
    EXPECT_TRUE(Has(r.err, "caught, the run hung and the watchdog stopped it")) << r.err;
    if (control == "--kill-rank 2") {
      EXPECT_TRUE(Has(r.err, "rank 2: no answer")) << r.err;
      EXPECT_TRUE(Has(r.err, "the fault plan kills it")) << r.err;
    } else {
      EXPECT_TRUE(Has(r.err, "posted, no match yet")) << r.err;
    }
  }
}

// One report per job, whichever rank dies (the lowest rank that answers reports), with no Open
// MPI notice restating it when launched through scripts/launch.sh, and every progress line whole.
TEST(MpiRunTest, ADeadRankGivesOneReportPerJob) {
  for (const int dead : {0, 2}) {
    const CommandOutput r = testing::RunCommand(
        "PIPEPROOF_PROGRESS=plain " + std::string(PIPEPROOF_SOURCE_DIR) + "/scripts/launch.sh 4 " + PIPEPROOF_BINARY +
        " run --transport mpi --kind 1f1b -r 4 -m 6 --timeout 1.5 --kill-rank " + std::to_string(dead) + kSmall);
    EXPECT_EQ(r.status, 3) << r.out << r.err;
    size_t results = 0;
    for (size_t at = r.err.find("\nresult: "); at != std::string::npos; at = r.err.find("\nresult: ", at + 1)) ++results;
    EXPECT_EQ(results, 1u) << r.err;
    EXPECT_TRUE(Has(r.err, "(found by rank " + std::string(dead == 0 ? "1" : "0") + ")")) << r.err;
    EXPECT_FALSE(Has(r.err, "MPI_ABORT")) << r.err;
    EXPECT_FALSE(Has(r.err, "-----")) << r.err;
    // Rank 0 prints the progress; it ends its line only when it is alive to report.
    if (dead != 0) {
      EXPECT_TRUE(std::regex_search(r.err, std::regex("(^|\n)run: done, [0-9.]+ s\n"))) << r.err;
    }
  }
}

// PyTorch's runtime orders (WAIT_SENDs, data-parallel actions) run on every stream layout, each
// stream a thread of the process; the pair layout's lazy set-up is an MPI exchange of its own.
// pytorch/pytorch issue 172668 really hangs on one stream per rank and runs on one per edge.
TEST(MpiRunTest, RuntimeOrdersRunOnEveryStreamLayoutAndALayoutsDeadlockHangs) {
  const std::string torch = std::string(PIPEPROOF_TESTDATA_DIR) + "/peers/pytorch/torch-2.15/";
  for (const std::string streams : {"rank", "pair", "edge"}) {
    const CommandOutput r = Mpirun(4, torch + "zbv_4rank_8stage_8mb_runtime.csv --streams " + streams +
                                          " --delay exp:50us --shuffle --poison --seed 5" + kSmall);
    EXPECT_EQ(r.status, 0) << streams << "\n" << r.out << r.err;
    EXPECT_TRUE(Has(r.out, "bit for bit")) << streams << "\n" << r.out;
  }
  const std::string cross = std::string(PIPEPROOF_TESTDATA_DIR) + "/verify/pytorch_172668.pps";
  CommandOutput r = Mpirun(2, cross + " --streams edge --delay exp:50us --seed 6" + kSmall);
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  r = Mpirun(2, cross + " --streams rank --allow-deadlock --timeout 1" + kSmall);
  EXPECT_EQ(r.status, 3) << r.out << r.err;
  EXPECT_TRUE(Has(r.err, "posted, no match yet")) << r.err;
  // Crossing first contacts hang at the set-ups, exchanges of their own over MPI.
  const std::string crossing = std::string(PIPEPROOF_TESTDATA_DIR) + "/verify/pair_setup_deadlock.pps";
  r = Mpirun(3, crossing + " --streams pair --allow-deadlock --timeout 1" + kSmall);
  EXPECT_EQ(r.status, 3) << r.out << r.err;
  EXPECT_TRUE(Has(r.err, "the set-up of its communicators with rank(s)")) << r.err;
  r = Mpirun(3, crossing + " --streams edge" + kSmall);
  EXPECT_EQ(r.status, 0) << r.out << r.err;
}

TEST(MpiRunTest, TheProcessCountMustMatchTheSchedule) {
  const CommandOutput r = Mpirun(2, "--kind dualpipe -r 4 -m 8" + kSmall);
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_TRUE(Has(r.err, "mpirun started 2 processes; use mpirun -np 4")) << r.err;
}

}  // namespace
}  // namespace pipeproof
