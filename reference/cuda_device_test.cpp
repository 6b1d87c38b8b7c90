// The CUDA device (CTest label `gpu`): every kernel against the CPU device in f32, bit-identical
// repeat runs on separate device objects, poisoning, bf16 rounding as reference/dtype.h rounds.
// Skips, saying why, where there is no usable GPU; the refusal without one is checked everywhere.
#include "reference/cuda_device.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "reference/cpu_device.h"
#include "reference/cuda_test_util.h"
#include "reference/stage_model.h"
#include "reference/stage_step_test_util.h"
#include "schedule/errors.h"

namespace pipeproof {
namespace {

using testing::StageStep;

std::vector<double> Wave(int64_t n, double scale, double phase = 0.3) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = scale * std::sin(0.7 * static_cast<double>(i) + phase);
  return v;
}

Tensor Make(Device& d, int rows, int cols, const std::vector<double>& v) {
  Tensor t = d.Allocate(rows, cols);
  d.Upload(v, t);
  return t;
}

// |gpu - cpu| <= rtol * max|cpu| + tiny, element by element: the GPU sums in another order.
void ExpectClose(const HostTensor& gpu, const HostTensor& cpu, double rtol, const char* what) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  double scale = 0;
  for (int64_t i = 0; i < cpu.size(); ++i) scale = std::max(scale, std::abs(cpu.At(i)));
  int bad = 0;
  for (int64_t i = 0; i < cpu.size() && bad < 5; ++i) {
    if (!(std::abs(gpu.At(i) - cpu.At(i)) <= rtol * scale + 1e-30)) {
      ++bad;
      ADD_FAILURE() << what << "[" << i << "]: gpu " << gpu.At(i) << ", cpu " << cpu.At(i);
    }
  }
}

TEST(CudaDeviceTest, RefusesWithoutAGpuOrForF64) {
  if (!ProbeCuda().usable) {
    EXPECT_FALSE(ProbeCuda().why.empty());
    EXPECT_THROW(MakeCudaDevice(DType::kF32), InputError);
  } else {
    EXPECT_THROW(MakeCudaDevice(DType::kF64), InputError);
    EXPECT_THROW(MakeCudaDevice(DType::kF32, 1000), InputError);
  }
}

TEST(CudaDeviceTest, EveryKernelAgreesWithTheCpuInF32) {
  SKIP_WITHOUT_GPU();
  auto gpu = MakeCudaDevice(DType::kF32);
  auto cpu = MakeCpuDevice(DType::kF32);
  // Odd sizes, so that no kernel gets away with assuming tiles.
  const int n = 37, in = 29, out = 53;
  const auto xv = Wave(n * in, 1.0), wv = Wave(out * in, 0.5, 1.1), gv = Wave(n * out, 2.0, 2.3);
  for (Device* d : {gpu.get(), cpu.get()}) EXPECT_EQ(d->dtype(), DType::kF32);
  std::vector<HostTensor> results[2];
  int side = 0;
  for (Device* d : {gpu.get(), cpu.get()}) {
    std::vector<HostTensor>& r = results[side++];
    Tensor x = Make(*d, n, in, xv), w = Make(*d, out, in, wv), gy = Make(*d, n, out, gv);
    Tensor y = d->Allocate(n, out), gx = d->Allocate(n, in), gw = d->Allocate(out, in);
    d->LinearForward(x, w, y);
    d->LinearInputGrad(gy, w, gx);
    d->LinearWeightGrad(gy, x, gw);
    Tensor a = d->Allocate(n, out), gh = d->Allocate(n, out);
    d->Gelu(gy, a);
    d->GeluBackward(gy, y, gh);
    Tensor loss = d->Allocate(1, 1), grad = d->Allocate(n, out);
    d->MseLoss(y, gy, loss, grad);
    Tensor acc = Make(*d, n, out, gv);
    d->AddInPlace(acc, y);
    Tensor copy = d->Allocate(n, in), zero = Make(*d, n, in, xv);
    d->Copy(x, copy);
    d->Zero(zero);
    d->FlipBit(copy, 5, 30);
    for (const Tensor* t : {&y, &gx, &gw, &a, &gh, &loss, &grad, &acc, &copy, &zero}) {
      r.push_back(d->Download(*t));
    }
  }
  const char* names[] = {
      "LinearForward",  "LinearInputGrad",    "LinearWeightGrad", "Gelu",         "GeluBackward",
      "MseLoss (loss)", "MseLoss (gradient)", "AddInPlace",       "Copy+FlipBit", "Zero"};
  for (size_t i = 0; i < results[0].size(); ++i)
    ExpectClose(results[0][i], results[1][i], 1e-5, names[i]);
  // Copy, FlipBit and Zero move bits, so they must agree exactly.
  EXPECT_EQ(results[0][8], results[1][8]);
  EXPECT_EQ(results[0][9], results[1][9]);
}


TEST(CudaDeviceTest, SeparateDevicesComputeTheSameBits) {
  SKIP_WITHOUT_GPU();
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    ModelConfig config;
    config.shape = {512, 64, 3};
    config.dtype = dtype;
    config.seed = 7;
    auto first = MakeCudaDevice(dtype);
    auto second = MakeCudaDevice(dtype);
    second->SetPoisonOnRelease(true);  // poisoning must never reach a result
    const std::vector<HostTensor> a = StageStep(*first, config);
    const std::vector<HostTensor> b = StageStep(*second, config);
    const std::vector<HostTensor> c = StageStep(*first, config);  // the pool now reuses buffers
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i], b[i]) << DTypeName(dtype) << " result " << i << " differs between devices";
      EXPECT_EQ(a[i], c[i]) << DTypeName(dtype) << " result " << i << " differs between runs";
      for (int64_t k = 0; k < a[i].size(); ++k) {
        ASSERT_TRUE(std::isfinite(a[i].At(k))) << "result " << i << " element " << k;
      }
    }
  }
}

TEST(CudaDeviceTest, StageStepIsCloseToTheCpuInF32) {
  SKIP_WITHOUT_GPU();
  ModelConfig config;
  config.shape = {64, 16, 2};
  config.dtype = DType::kF32;
  auto gpu = MakeCudaDevice(DType::kF32);
  auto cpu = MakeCpuDevice(DType::kF32);
  const std::vector<HostTensor> g = StageStep(*gpu, config), c = StageStep(*cpu, config);
  for (size_t i = 0; i < g.size(); ++i) ExpectClose(g[i], c[i], 1e-4, "stage step");
}

TEST(CudaDeviceTest, ReleasedBuffersArePoisonedAndPooled) {
  SKIP_WITHOUT_GPU();
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    auto d = MakeCudaDevice(dtype);
    d->SetPoisonOnRelease(true);
    const void* where = nullptr;
    {
      Tensor t = Make(*d, 8, 16, Wave(128, 1.0));
      where = t.data();
    }
    Tensor again = d->Allocate(8, 16);
    EXPECT_EQ(again.data(), where) << "the pool hands the freed buffer out again";
    const HostTensor h = d->Download(again);
    for (int64_t i = 0; i < h.size(); ++i)
      ASSERT_TRUE(std::isnan(h.At(i))) << DTypeName(dtype) << " element " << i;
    const MemoryStats s = d->memory_stats();
    EXPECT_EQ(s.allocations, 2);
    EXPECT_EQ(s.reuses, 1);
    EXPECT_EQ(s.live_bytes, static_cast<int64_t>(again.bytes()));
    EXPECT_EQ(s.peak_bytes, static_cast<int64_t>(again.bytes()));
  }
}

TEST(CudaDeviceTest, Bf16RoundsAsDtypeHDoes) {
  SKIP_WITHOUT_GPU();
  auto d = MakeCudaDevice(DType::kBF16);
  const int n = 1000;
  std::vector<double> v = Wave(n, 3.0), u = Wave(n, 0.01, 0.9);
  v[0] = 1.0 + 1.0 / 256;  // a tie: rounds to even
  v[1] = 1.0 + 3.0 / 256;
  v[2] = std::nan("");
  Tensor t = Make(*d, 1, n, v), s = Make(*d, 1, n, u);
  const HostTensor up = d->Download(t);
  EXPECT_EQ(up, HostTensor::FromDoubles(DType::kBF16, 1, n, v));
  EXPECT_EQ(up.BitsAt(0), FloatToBf16(1.0f));
  // acc += t: each element added in f32 and rounded once, as Sum() does on the host.
  const HostTensor expected_sum = Sum(up, d->Download(s));
  d->AddInPlace(t, s);
  const HostTensor sum = d->Download(t);
  for (int i = 3; i < n; ++i) EXPECT_EQ(sum.BitsAt(i), expected_sum.BitsAt(i)) << "element " << i;
  // GELU: f32 arithmetic then one rounding; erff may differ from std::erf in the last f32 bit,
  // which can move the bf16 result by at most one unit.
  Tensor a = d->Allocate(1, n);
  d->Gelu(s, a);
  const HostTensor ha = d->Download(a), hs = d->Download(s);
  for (int i = 3; i < n; ++i) {
    const float x = static_cast<float>(hs.At(i));
    const float g = 0.5f * x * (1.0f + std::erf(x * 0.70710678f));
    const int diff = std::abs(static_cast<int>(ha.BitsAt(i)) - static_cast<int>(FloatToBf16(g)));
    EXPECT_LE(diff, 1) << "element " << i;
  }
}

TEST(CudaDeviceTest, FlipBitFlipsOneBit) {
  SKIP_WITHOUT_GPU();
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    auto d = MakeCudaDevice(dtype);
    Tensor t = Make(*d, 2, 4, Wave(8, 1.0));
    const HostTensor before = d->Download(t);
    d->FlipBit(t, 6, 3);
    const HostTensor after = d->Download(t);
    for (int64_t i = 0; i < 8; ++i) {
      EXPECT_EQ(after.BitsAt(i), i == 6 ? (before.BitsAt(i) ^ 8u) : before.BitsAt(i));
    }
    EXPECT_THROW(d->FlipBit(t, 8, 0), std::logic_error);
    EXPECT_THROW(d->FlipBit(t, 0, dtype == DType::kF32 ? 32 : 16), std::logic_error);
  }
}

}  // namespace
}  // namespace pipeproof
