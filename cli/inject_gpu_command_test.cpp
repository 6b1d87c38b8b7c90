// `pipeproof inject` over the real NCCL with GPU delays (CTest label `gpu`): spin kernels and
// CUDA-event completion times in the traces of a one-rank program that sends to itself
// (usercode/nccl_gpu_program.cpp). Skips, saying why, where there is no GPU.
#include <gtest/gtest.h>

#include <fstream>

#include "cli/command_test_util.h"
#include "usercode/nccl_trace.h"

namespace pipeproof {
namespace {

TEST(NcclGpuTest, RealNcclUnderInjectWithGpuDelays) {
  if (std::string(PIPEPROOF_NCCL_GPU_PROGRAM).empty())
    GTEST_SKIP() << "built without nccl.h and libnccl";
  const std::string dir = testing::ScratchPath("gpu_traces");
  const std::string plan = testing::ScratchPath("gpu_plan.json");
  std::ofstream(plan)
      << R"({"format": "pipeproof fault plan", "version": 1, "ranks": [{"post_delay_us": [0, 0, 20000]}]})";
  const auto r =
      testing::RunPipeproof("inject --quiet --delays gpu --plan " + plan + " --trace-dir " + dir +
                            " -- " + PIPEPROOF_NCCL_GPU_PROGRAM + " 4");
  if (r.status == 77) GTEST_SKIP() << "no GPU here: " << r.err;
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const std::vector<Trace> traces = ReadTraceDirectory(dir);
  ASSERT_EQ(traces.size(), 1u);
  const Trace& t = traces[0];
  EXPECT_TRUE(t.header.flags & kTraceGpuCompletion) << "completion times from CUDA events";
  EXPECT_TRUE(t.header.flags & kTraceGpuDelays) << "the delay ran as a spin kernel";
  ASSERT_EQ(t.calls.size(), 8u);
  for (const TraceCall& c : t.calls) EXPECT_TRUE(c.flags & kCallCompleted);
  EXPECT_TRUE(t.calls[2].flags & kCallGpuDelay);
  EXPECT_GE(t.calls[2].t_complete - t.calls[2].t_call, 20'000'000u)
      << "the group completed after the delay on the GPU";
  const auto check = testing::RunPipeproof("trace check " + dir);
  EXPECT_EQ(check.status, 0) << check.out;
}

}  // namespace
}  // namespace pipeproof
