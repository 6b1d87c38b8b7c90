// The NCCL transport (CTest label `gpu`): one rank sending to itself through a real NCCL group
// (one GPU suffices), with a delivery delay as a spin kernel, in both modes; and `pipeproof run
// --transport nccl` as threads and under mpirun with a GPU per rank, which needs two or more GPUs
// (on one GPU the threads mode must refuse, and the mpirun test skips, saying why).
#include "exec/nccl_transport.h"

#include <gtest/gtest.h>

#include "cli/command_test_util.h"
#include "reference/cuda_device.h"

namespace pipeproof {
namespace {

using namespace std::chrono_literals;

Tensor Filled(Device& d, double value) {
  Tensor t = d.Allocate(4, 8);
  d.Upload(std::vector<double>(32, value), t);
  return t;
}

TEST(NcclTransportTest, OneRankSendsToItselfInAGroupWithADeliveryDelay) {
  const CudaProbe probe = ProbeCuda();
  if (!probe.usable) GTEST_SKIP() << "no GPU here: " << probe.why;
  CudaDevice device(DType::kF32);
  StopSignal stop;
  std::unique_ptr<Transport> t = MakeNcclTransport(NewNcclId(), 0, 1, device, stop);
  EXPECT_EQ(t->Name(), "nccl");
  Tensor x = Filled(device, 2.5), y = Filled(device, 0);
  const std::vector<CommOp> ops = {{true, 0, x.data(), x.bytes(), 0, 0},
                                   {false, 0, y.data(), y.bytes(), 0, 20000}};
  UnitProgress progress(ops.size());
  const auto start = Clock::now();
  const UnitResult r = t->RunUnit(ops, progress);
  ASSERT_EQ(r.status, UnitResult::Status::kComplete) << r.error;
  EXPECT_GE(Clock::now() - start, 20ms) << "the spin kernel held the group back";
  EXPECT_EQ(device.Download(y), device.Download(x));
  for (const auto& p : progress.ops) EXPECT_EQ(p.load(), OpProgress::kComplete);
  // A peer outside the communicator fails the unit, not the process.
  const std::vector<CommOp> bad = {{true, 3, x.data(), x.bytes(), 0, 0}};
  UnitProgress bad_progress(1);
  EXPECT_EQ(t->RunUnit(bad, bad_progress).status, UnitResult::Status::kFailed);
}

TEST(NcclTransportTest, ThreadsModeCliqueOfOneSendsToItself) {
  const CudaProbe probe = ProbeCuda();
  if (!probe.usable) GTEST_SKIP() << "no GPU here: " << probe.why;
  CudaDevice device(DType::kBF16);
  StopSignal stop;
  std::vector<std::unique_ptr<Transport>> t = MakeNcclThreadTransports({&device}, stop);
  ASSERT_EQ(t.size(), 1u);
  Tensor x = Filled(device, -1.25), y = Filled(device, 0);
  const std::vector<CommOp> ops = {{false, 0, y.data(), y.bytes(), 0, 0},
                                   {true, 0, x.data(), x.bytes(), 0, 0}};
  UnitProgress progress(ops.size());
  const UnitResult r = t[0]->RunUnit(ops, progress);
  ASSERT_EQ(r.status, UnitResult::Status::kComplete) << r.error;
  EXPECT_EQ(device.Download(y), device.Download(x));
  // Two ranks on one GPU: refused before NCCL is asked.
  CudaDevice same(DType::kBF16);
  EXPECT_THROW(MakeNcclThreadTransports({&device, &same}, stop), InputError);
}

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
