// The NCCL transport (CTest label `gpu`): one rank sending to itself through a real NCCL group
// (one GPU suffices), with a delivery delay as a spin kernel, in both modes. `pipeproof run
// --transport nccl` is tested in cli/nccl_run_command_test.cpp.
#include "exec/nccl_transport.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace pipeproof
