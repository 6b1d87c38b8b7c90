#include "reference/cpu_device.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "schedule/errors.h"

namespace pipeproof {
namespace {

std::vector<double> Ramp(int n, double scale) {
  std::vector<double> v(n);
  for (int i = 0; i < n; ++i) v[i] = scale * std::sin(0.7 * i + 0.3);
  return v;
}

Tensor Make(Device& d, int rows, int cols, const std::vector<double>& v) {
  Tensor t = d.Allocate(rows, cols);
  d.Upload(v, t);
  return t;
}

// The three products against a plain triple loop summing in the documented order.
TEST(CpuDeviceTest, ProductsSumTheInnerIndexInIncreasingOrder) {
  auto d = MakeCpuDevice(DType::kF64);
  const int n = 5, in = 7, out = 6;
  auto xv = Ramp(n * in, 1.0), wv = Ramp(out * in, 0.5), gv = Ramp(n * out, 2.0);
  Tensor x = Make(*d, n, in, xv), w = Make(*d, out, in, wv), gy = Make(*d, n, out, gv);
  Tensor y = d->Allocate(n, out), gx = d->Allocate(n, in), gw = d->Allocate(out, in);
  d->LinearForward(x, w, y);
  d->LinearInputGrad(gy, w, gx);
  d->LinearWeightGrad(gy, x, gw);
  HostTensor hy = d->Download(y), hgx = d->Download(gx), hgw = d->Download(gw);
  for (int r = 0; r < n; ++r) {
    for (int o = 0; o < out; ++o) {
      double s = 0;
      for (int i = 0; i < in; ++i) s += xv[r * in + i] * wv[o * in + i];
      EXPECT_EQ(hy.At(r * out + o), s);
    }
    for (int i = 0; i < in; ++i) {
      double s = 0;
      for (int o = 0; o < out; ++o) s += gv[r * out + o] * wv[o * in + i];
      EXPECT_EQ(hgx.At(r * in + i), s);
    }
  }
  for (int o = 0; o < out; ++o) {
    for (int i = 0; i < in; ++i) {
      double s = 0;
      for (int r = 0; r < n; ++r) s += gv[r * out + o] * xv[r * in + i];
      EXPECT_EQ(hgw.At(o * in + i), s);
    }
  }
}

TEST(CpuDeviceTest, GeluAndItsDerivative) {
  auto d = MakeCpuDevice(DType::kF64);
  std::vector<double> hv = {-3, -1, -0.5, 0, 0.5, 1, 3};
  Tensor h = Make(*d, 1, 7, hv), a = d->Allocate(1, 7), ga = Make(*d, 1, 7, std::vector<double>(7, 1.0));
  Tensor gh = d->Allocate(1, 7);
  d->Gelu(h, a);
  d->GeluBackward(h, ga, gh);
  HostTensor ha = d->Download(a), hg = d->Download(gh);
  for (int i = 0; i < 7; ++i) {
    const double x = hv[i];
    EXPECT_NEAR(ha.At(i), 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))), 1e-15);
    const double eps = 1e-6;
    auto gelu = [](double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); };
    EXPECT_NEAR(hg.At(i), (gelu(x + eps) - gelu(x - eps)) / (2 * eps), 1e-8);
  }
}

TEST(CpuDeviceTest, MseLossAndGradient) {
  auto d = MakeCpuDevice(DType::kF32);
  Tensor y = Make(*d, 1, 4, {1, 2, 3, 4}), l = Make(*d, 1, 4, {0, 2, 5, 4});
  Tensor loss = d->Allocate(1, 1), gy = d->Allocate(1, 4);
  d->MseLoss(y, l, loss, gy);
  EXPECT_EQ(d->Download(loss).At(0), 1.25);  // (1 + 0 + 4 + 0) / 4
  EXPECT_EQ(d->Download(gy).ToDoubles(), (std::vector<double>{0.5, 0, -1, 0}));
}

TEST(CpuDeviceTest, ReleasedBuffersArePoisonedAndReused) {
  auto d = MakeCpuDevice(DType::kF64);
  d->SetPoisonOnRelease(true);
  Tensor t = Make(*d, 2, 2, {1, 2, 3, 4});
  const void* where = t.data();
  t.Reset();
  Tensor u = d->Allocate(2, 2);
  EXPECT_EQ(u.data(), where);
  for (double v : d->Download(u).ToDoubles()) EXPECT_TRUE(std::isnan(v));
  MemoryStats stats = d->memory_stats();
  EXPECT_EQ(stats.allocations, 2);
  EXPECT_EQ(stats.reuses, 1);
  EXPECT_EQ(stats.live_bytes, 32);
  EXPECT_EQ(stats.peak_bytes, 32);
}

TEST(CpuDeviceTest, FlipBitFlipsOneBit) {
  auto d = MakeCpuDevice(DType::kF64);
  Tensor t = Make(*d, 1, 2, {1.0, 1.0});
  d->FlipBit(t, 1, 51);  // the mantissa's top bit: 1.0 -> 1.5
  EXPECT_EQ(d->Download(t).ToDoubles(), (std::vector<double>{1.0, 1.5}));
}

TEST(CpuDeviceTest, RefusesBf16) {
  EXPECT_THROW(MakeCpuDevice(DType::kBF16), InputError);
  EXPECT_EQ(MakeCpuDevice(DType::kF32)->Name(), "cpu-f32");
}

}  // namespace
}  // namespace pipeproof
