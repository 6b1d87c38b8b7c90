// The interposer's GPU side (CTest label `gpu`): spin kernels and CUDA-event completion times, on
// the driver alone (cli/inject_gpu_command_test.cpp runs them through `pipeproof inject` over the
// real NCCL). Skips, saying why, where there is no GPU.
#include "usercode/nccl_gpu.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <time.h>

#include <chrono>
#include <thread>

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

}  // namespace
}  // namespace pipeproof
