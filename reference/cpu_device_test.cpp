#include "reference/cpu_device.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <thread>
#include <tuple>
#include <vector>

#include "reference/cpu_blas.h"
#include "reference/cpu_gemm_oracle.h"
#include "reference/stage_model.h"
#include "reference/stage_step_test_util.h"
#include "schedule/errors.h"

namespace pipeproof {
namespace {

using testing::StageStep;

// Each operand its own phase: operands that were equal up to scale could hide a swapped operand.
std::vector<double> Ramp(int n, double scale, double phase = 0.3) {
  std::vector<double> v(n);
  for (int i = 0; i < n; ++i) v[i] = scale * std::sin(0.7 * i + phase);
  return v;
}

template <class T>
std::vector<T> Cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

Tensor Make(Device& d, int rows, int cols, const std::vector<double>& v) {
  Tensor t = d.Allocate(rows, cols);
  d.Upload(v, t);
  return t;
}

// Values as the device holds them: the host values rounded to T.
template <class T>
std::vector<T> Held(Device& d, const Tensor& t) {
  std::vector<T> out;
  for (double v : d.Download(t).ToDoubles()) out.push_back(static_cast<T>(v));
  return out;
}

struct ProductShape {
  int n, in, out;  // x [n, in], w [out, in], gy [n, out]
};

// Each of the device's three products, through the device, against the loop oracle.
template <class T>
void ExpectProductsMatchTheOracle(const ProductShape& s) {
  using namespace testing;
  SCOPED_TRACE(::testing::Message() << (sizeof(T) == 8 ? "f64" : "f32") << " n " << s.n << " in " << s.in
                                    << " out " << s.out);
  auto d = MakeCpuDevice(sizeof(T) == 8 ? DType::kF64 : DType::kF32);
  Tensor x = Make(*d, s.n, s.in, Ramp(s.n * s.in, 1.0)), w = Make(*d, s.out, s.in, Ramp(s.out * s.in, 0.5, 1.1));
  Tensor gy = Make(*d, s.n, s.out, Ramp(s.n * s.out, 2.0, 2.3));
  Tensor y = d->Allocate(s.n, s.out), gx = d->Allocate(s.n, s.in), gw = d->Allocate(s.out, s.in);
  d->LinearForward(x, w, y);
  d->LinearInputGrad(gy, w, gx);
  d->LinearWeightGrad(gy, x, gw);
  const std::vector<T> xv = Held<T>(*d, x), wv = Held<T>(*d, w), gv = Held<T>(*d, gy);
  const OracleCheck forward =
      WithinRounding(Held<T>(*d, y), OracleLinearForward(xv, wv, s.n, s.in, s.out),
                     OracleLinearForward(Abs(xv), Abs(wv), s.n, s.in, s.out), s.in);
  EXPECT_EQ(forward.outside, 0) << "LinearForward (x w^T), " << forward.first;
  const OracleCheck input =
      WithinRounding(Held<T>(*d, gx), OracleLinearInputGrad(gv, wv, s.n, s.out, s.in),
                     OracleLinearInputGrad(Abs(gv), Abs(wv), s.n, s.out, s.in), s.out);
  EXPECT_EQ(input.outside, 0) << "LinearInputGrad (gy w), " << input.first;
  const OracleCheck weight =
      WithinRounding(Held<T>(*d, gw), OracleLinearWeightGrad(gv, xv, s.n, s.out, s.in),
                     OracleLinearWeightGrad(Abs(gv), Abs(xv), s.n, s.out, s.in), s.n);
  EXPECT_EQ(weight.outside, 0) << "LinearWeightGrad (gy^T x), " << weight.first;
}

// Non-square throughout, so that a swapped size or stride cannot go unnoticed; single rows and
// columns; odd sizes that leave tails in every register tile; an inner length longer than
// OpenBLAS's panels (the sum over k split into blocks); and the stage model's own shapes at
// hidden 256, seq 64 (`pipeproof run --hidden 256 --seq 64`: rows 128, widths 256 and 1024).
const ProductShape kProductShapes[] = {{5, 7, 6},       {1, 1, 1},       {1, 9, 4},        {3, 1, 17},
                                       {37, 29, 53},    {33, 300, 1100}, {130, 1030, 70},
                                       {128, 256, 1024}, {128, 1024, 256}};

TEST(CpuDeviceTest, ProductsAgreeWithTheLoopOracleF64) {
  for (const ProductShape& s : kProductShapes) ExpectProductsMatchTheOracle<double>(s);
}

TEST(CpuDeviceTest, ProductsAgreeWithTheLoopOracleF32) {
  for (const ProductShape& s : kProductShapes) ExpectProductsMatchTheOracle<float>(s);
}

// Negative control: the comparison above must be able to fail. Each product made with one operand
// read the wrong way round (a legal call on the same memory: only the values can tell) or with a
// wrong stride is far outside the oracle's rounding allowance, while the right call is within.
template <class T>
void ExpectWrongCallsCaught() {
  using namespace testing;
  const int n = 37, in = 29, out = 53, pad = 3;
  const std::vector<T> xv = Cast<T>(Ramp(n * (in + pad), 1.0)), wv = Cast<T>(Ramp(out * in, 0.5, 1.1)),
                       gv = Cast<T>(Ramp(n * out, 2.0, 2.3));
  // x as [n, in + pad] storage: its first n * in elements are the dense x the oracle sees.
  const std::vector<T> x(xv.begin(), xv.begin() + n * in);
  const std::vector<T> want_y = OracleLinearForward(x, wv, n, in, out),
                       mag_y = OracleLinearForward(Abs(x), Abs(wv), n, in, out);
  const std::vector<T> want_gx = OracleLinearInputGrad(gv, wv, n, out, in),
                       mag_gx = OracleLinearInputGrad(Abs(gv), Abs(wv), n, out, in);
  const std::vector<T> want_gw = OracleLinearWeightGrad(gv, x, n, out, in),
                       mag_gw = OracleLinearWeightGrad(Abs(gv), Abs(x), n, out, in);
  std::vector<T> y(n * out), gx(n * in), gw(out * in);

  BlasGemm(false, true, n, out, in, x.data(), in, wv.data(), in, y.data(), out);  // right
  EXPECT_EQ(WithinRounding(y, want_y, mag_y, in).outside, 0);
  BlasGemm(false, false, n, out, in, x.data(), in, wv.data(), out, y.data(), out);  // w not transposed
  EXPECT_GT(WithinRounding(y, want_y, mag_y, in).outside, n * out / 2);
  BlasGemm(false, true, n, out, in, xv.data(), in + pad, wv.data(), in, y.data(), out);  // x's stride
  EXPECT_GT(WithinRounding(y, want_y, mag_y, in).outside, n * out / 2);

  BlasGemm(false, false, n, in, out, gv.data(), out, wv.data(), in, gx.data(), in);  // right
  EXPECT_EQ(WithinRounding(gx, want_gx, mag_gx, out).outside, 0);
  BlasGemm(false, true, n, in, out, gv.data(), out, wv.data(), out, gx.data(), in);  // w transposed
  EXPECT_GT(WithinRounding(gx, want_gx, mag_gx, out).outside, n * in / 2);

  BlasGemm(true, false, out, in, n, gv.data(), out, x.data(), in, gw.data(), in);  // right
  EXPECT_EQ(WithinRounding(gw, want_gw, mag_gw, n).outside, 0);
  BlasGemm(false, false, out, in, n, gv.data(), n, x.data(), in, gw.data(), in);  // gy not transposed
  EXPECT_GT(WithinRounding(gw, want_gw, mag_gw, n).outside, out * in / 2);
  BlasGemm(true, true, out, in, n, gv.data(), out, x.data(), n, gw.data(), in);  // x transposed too
  EXPECT_GT(WithinRounding(gw, want_gw, mag_gw, n).outside, out * in / 2);
}

TEST(CpuDeviceTest, TheOracleCatchesAWrongTransposeOrStride) {
  ExpectWrongCallsCaught<double>();
  ExpectWrongCallsCaught<float>();
}

TEST(CpuDeviceTest, BlasGemmRefusesAStrideShorterThanItsRow) {
  std::vector<double> a(12), b(12), c(12);
  EXPECT_THROW(BlasGemm(false, false, 3, 4, 3, a.data(), 2, b.data(), 4, c.data(), 4), std::logic_error);
  EXPECT_THROW(BlasGemm(false, true, 3, 4, 3, a.data(), 3, b.data(), 2, c.data(), 4), std::logic_error);
  EXPECT_THROW(BlasGemm(true, false, 3, 4, 3, a.data(), 2, b.data(), 4, c.data(), 4), std::logic_error);
  EXPECT_THROW(BlasGemm(false, false, 3, 4, 3, a.data(), 3, b.data(), 4, c.data(), 3), std::logic_error);
  EXPECT_NO_THROW(BlasGemm(true, false, 3, 4, 3, a.data(), 3, b.data(), 4, c.data(), 4));
}

// reference/cpu_blas.cpp's claims, checked, on testing::StageStep.

// As in a pipelined run: many threads, each with its own device, all computing at once, against
// one thread alone. Two widths: one small enough for OpenBLAS's small-matrix kernels, one (the
// run's hidden 256, seq 64) through its blocked driver.
TEST(CpuDeviceTest, SameShapesGiveTheSameBitsOnEveryThreadAtOnce) {
  for (DType dtype : {DType::kF64, DType::kF32}) {
    for (ModelShape shape : {ModelShape{16, 8, 2}, ModelShape{256, 64, 2}}) {
      SCOPED_TRACE(::testing::Message() << DTypeName(dtype) << " hidden " << shape.hidden);
      ModelConfig config;
      config.shape = shape;
      config.dtype = dtype;
      config.seed = 5;
      auto alone = MakeCpuDevice(dtype);
      const std::vector<HostTensor> want = StageStep(*alone, config);
      constexpr int kThreads = 8, kRepeats = 2;
      std::vector<std::vector<HostTensor>> got(kThreads * kRepeats);
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
          auto d = MakeCpuDevice(dtype);
          d->SetPoisonOnRelease(t % 2 == 1);  // reused, poisoned buffers must not matter either
          for (int r = 0; r < kRepeats; ++r) got[t * kRepeats + r] = StageStep(*d, config);
        });
      }
      for (std::thread& t : threads) t.join();
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(got[i].size(), want.size());
        for (size_t k = 0; k < want.size(); ++k) {
          EXPECT_EQ(got[i][k], want[k]) << "thread " << i / kRepeats << " repeat " << i % kRepeats
                                        << " result " << k;
        }
      }
    }
  }
}

// Operands and result anywhere in memory, not only where the device's 64-byte aligned pool puts
// them: every offset of up to one cache line gives the same bits, in every product variant, small
// (kernels reading in place) and large (packed panels).
template <class T>
void ExpectAlignmentIrrelevant(int m, int n, int k) {
  SCOPED_TRACE(::testing::Message() << (sizeof(T) == 8 ? "f64" : "f32") << " " << m << "x" << n << "x" << k);
  constexpr int kLine = 64 / sizeof(T);
  const std::vector<T> a = Cast<T>(Ramp(m * k, 1.0)), b = Cast<T>(Ramp(k * n, 0.5, 1.1));
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      const int lda = ta ? m : k, ldb = tb ? k : n;
      std::vector<T> aligned(m * n);
      BlasGemm(ta, tb, m, n, k, a.data(), lda, b.data(), ldb, aligned.data(), n);
      for (int offset = 1; offset <= kLine; offset += offset < 4 ? 1 : 3) {
        std::vector<T> ab(offset + a.size()), bb(offset + b.size()), cb(offset + m * n, T(-1));
        std::copy(a.begin(), a.end(), ab.begin() + offset);
        std::copy(b.begin(), b.end(), bb.begin() + offset);
        BlasGemm(ta, tb, m, n, k, ab.data() + offset, lda, bb.data() + offset, ldb, cb.data() + offset, n);
        EXPECT_TRUE(std::equal(aligned.begin(), aligned.end(), cb.begin() + offset))
            << "transposes " << ta << tb << ", offset " << offset << " elements";
      }
    }
  }
}

TEST(CpuDeviceTest, OperandAlignmentDoesNotChangeTheBits) {
  for (auto [m, n, k] : {std::tuple{7, 5, 9}, std::tuple{37, 53, 29}, std::tuple{128, 256, 1024}}) {
    ExpectAlignmentIrrelevant<double>(m, n, k);
    ExpectAlignmentIrrelevant<float>(m, n, k);
  }
}

// The product overwrites its output without reading it: NaN left by poisoning never gets in.
TEST(CpuDeviceTest, ProductsNeverReadTheirOutput) {
  for (DType dtype : {DType::kF64, DType::kF32}) {
    auto d = MakeCpuDevice(dtype);
    const int n = 33, in = 40, out = 24;
    Tensor x = Make(*d, n, in, Ramp(n * in, 1.0)), w = Make(*d, out, in, Ramp(out * in, 0.5));
    Tensor clean = d->Allocate(n, out), poisoned = Make(*d, n, out, std::vector<double>(n * out, std::nan("")));
    d->Zero(clean);
    d->LinearForward(x, w, clean);
    d->LinearForward(x, w, poisoned);
    EXPECT_EQ(d->Download(poisoned), d->Download(clean)) << DTypeName(dtype);
  }
}

TEST(CpuDeviceTest, BlasRunsOneThreadPerCall) {
  auto d = MakeCpuDevice(DType::kF64);
  Tensor x = Make(*d, 2, 2, {1, 2, 3, 4}), y = d->Allocate(2, 2);
  d->LinearForward(x, x, y);
  EXPECT_EQ(d->Download(y).ToDoubles(), (std::vector<double>{5, 11, 11, 25}));
  EXPECT_EQ(BlasThreadsPerCall(), 1);
  EXPECT_NE(BlasDescription().find("1 thread per call"), std::string::npos) << BlasDescription();
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
