// `pipeproof run --transport nccl` as a user runs it (CTest label `gpu`): as threads, rank r on GPU
// r, and under mpirun with a GPU per rank, which needs two or more GPUs (on one GPU the threads
// mode must refuse, and the mpirun test skips, saying why).
#include <gtest/gtest.h>

#include "cli/command_test_util.h"
#include "reference/cuda_device.h"

namespace pipeproof {
namespace {

// Without mpirun the NCCL transport runs its ranks as threads, rank r on GPU r.
TEST(NcclTransportTest, ThreadsModeRunWithAGpuPerRankOrARefusal) {
  const CudaProbe probe = ProbeCuda();
  if (!probe.usable) GTEST_SKIP() << "no GPU here: " << probe.why;
  const int ranks = probe.devices >= 4 ? 4 : 2;
  const auto r =
      testing::RunPipeproof("run --transport nccl --device cuda --dtype f32 --kind dualpipe -r " +
                            std::to_string(ranks) + " -m " + std::to_string(2 * ranks) +
                            " --hidden 64 --seq 32 --delay exp:200us --shuffle --poison");
  if (probe.devices < ranks) {
    EXPECT_EQ(r.status, 2) << r.out << r.err;
    EXPECT_NE(r.err.find("needs one GPU per rank"), std::string::npos) << r.err;
  } else {
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("on nccl;"), std::string::npos) << r.out;
  }
}

TEST(NcclTransportTest, RunUnderMpirunWithAGpuPerRank) {
  const CudaProbe probe = ProbeCuda();
  if (!probe.usable) GTEST_SKIP() << "no GPU here: " << probe.why;
  if (probe.devices < 2) {
    GTEST_SKIP() << "one GPU here: NCCL refuses two ranks on one GPU, so multi-rank NCCL runs need "
                    "two or more (the streams transport covers one GPU)";
  }
  if (std::string(PIPEPROOF_MPIEXEC).empty()) GTEST_SKIP() << "built without MPI";
  const int ranks = probe.devices >= 4 ? 4 : 2;
  const std::string run =
      std::string(PIPEPROOF_MPIEXEC) + " --allow-run-as-root --oversubscribe -np " +
      std::to_string(ranks) + " " + PIPEPROOF_BINARY +
      " run --transport nccl --device cuda --dtype f32 --kind dualpipe -r " +
      std::to_string(ranks) + " -m " + std::to_string(2 * ranks) + " --hidden 64 --seq 32 ";
  auto r = testing::RunCommand(run + "--delay exp:200us --shuffle --poison --seed 3");
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("on nccl ("), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("bit for bit"), std::string::npos) << r.out;
  r = testing::RunCommand(run + "--corrupt bitflip --seed 4 -q");
  EXPECT_EQ(r.status, 1) << r.out << r.err;
}

}  // namespace
}  // namespace pipeproof
