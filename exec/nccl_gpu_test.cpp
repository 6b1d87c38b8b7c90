// The interposer's GPU side (CTest label `gpu`): spin kernels and CUDA-event completion times, on
// the driver alone and through `pipeproof inject` over the real NCCL. Skips, saying why, where
// there is no GPU.
#include "exec/nccl_gpu.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <time.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "cli/command_test_util.h"
#include "exec/nccl_trace.h"

namespace pipeproof {
namespace {

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

// Makes device 0's primary context current, as a CUDA program has one; false without a GPU.
bool MakeContextCurrent() {
  void* lib = dlopen("libcuda.so.1", RTLD_NOW);
  if (!lib) return false;
  using Init = int (*)(unsigned);
  using Retain = int (*)(void**, int);
  using SetCurrent = int (*)(void*);
  auto init = reinterpret_cast<Init>(dlsym(lib, "cuInit"));
  auto retain = reinterpret_cast<Retain>(dlsym(lib, "cuDevicePrimaryCtxRetain"));
  auto set_current = reinterpret_cast<SetCurrent>(dlsym(lib, "cuCtxSetCurrent"));
  void* ctx = nullptr;
  return init && retain && set_current && init(0) == 0 && retain(&ctx, 0) == 0 &&
         set_current(ctx) == 0;
}

TEST(NcclGpuTest, SpinKernelDelaysTheStreamAndEventsTimeIt) {
  interposer::Gpu* gpu = interposer::Gpu::Get(&NowNs);
  if (!gpu || !MakeContextCurrent())
    GTEST_SKIP() << "no usable GPU here (libcuda.so.1 missing, or no device)";
  interposer::Gpu::Event before, after;
  ASSERT_TRUE(gpu->Record(nullptr, &before));
  ASSERT_TRUE(gpu->Spin(nullptr, 20000));
  ASSERT_TRUE(gpu->Record(nullptr, &after));
  uint64_t t0 = 0, t1 = 0;
  for (int i = 0; i < 5000 && gpu->Query(after, &t1) == interposer::Gpu::Poll::kPending; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(gpu->Query(before, &t0), interposer::Gpu::Poll::kDone);
  ASSERT_EQ(gpu->Query(after, &t1), interposer::Gpu::Poll::kDone);
  EXPECT_GE(t1 - t0, 20'000'000u) << "the spin kernel held the stream for 20 ms";
  EXPECT_LT(t1 - t0, 2'000'000'000u);
  gpu->Release(before);
  gpu->Release(after);
}

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
