#include "reference/stage_model.h"

#include <gtest/gtest.h>

#include <cmath>

#include "reference/cpu_device.h"
#include "schedule/errors.h"

namespace pipeproof {
namespace {

ModelConfig Small() {
  ModelConfig c;
  c.shape = {4, 3, 2};
  c.seed = 11;
  return c;
}

// Loss of one stage for given host weights and input.
double Loss(Device& d, const ModelConfig& c, const std::vector<double>& w1,
            const std::vector<double>& w2, const std::vector<double>& x) {
  const int h = c.shape.hidden, n = c.shape.Rows();
  StageWeights w{d.Allocate(4 * h, h), d.Allocate(h, 4 * h)};
  d.Upload(w1, w.w1);
  d.Upload(w2, w.w2);
  Tensor in = d.Allocate(n, h);
  d.Upload(x, in);
  ForwardSaved saved;
  Tensor y = StageForward(d, w, std::move(in), saved);
  Tensor gy;
  return d.Download(LossAndGrad(d, y, LoadLabel(d, c, 0), gy)).At(0);
}

TEST(StageModelTest, GradientsMatchFiniteDifferences) {
  auto d = MakeCpuDevice(DType::kF64);
  const ModelConfig c = Small();
  const auto w1 = InitialWeight(c, 0, 0), w2 = InitialWeight(c, 0, 1);
  const auto x = MicrobatchInput(c, 0);

  StageWeights weights = LoadWeights(*d, c, 0);
  ForwardSaved saved;
  Tensor y = StageForward(*d, weights, LoadInput(*d, c, 0), saved);
  Tensor gy;
  LossAndGrad(*d, y, LoadLabel(*d, c, 0), gy);
  WeightGradStash stash;
  Tensor gx = StageInputGrad(*d, weights, std::move(saved), std::move(gy), true, stash);
  StageWeights grads = ZeroGrads(*d, c.shape);
  StageWeightGrad(*d, std::move(stash), grads);
  const HostTensor g1 = d->Download(grads.w1), g2 = d->Download(grads.w2), gxh = d->Download(gx);

  const double eps = 1e-6;
  auto check = [&](std::vector<double> values, int which, const HostTensor& analytic) {
    for (int i = 0; i < static_cast<int>(values.size()); i += 7) {
      std::vector<double> plus = values, minus = values;
      plus[i] += eps;
      minus[i] -= eps;
      auto loss = [&](const std::vector<double>& v) {
        return which == 0 ? Loss(*d, c, v, w2, x) : which == 1 ? Loss(*d, c, w1, v, x) : Loss(*d, c, w1, w2, v);
      };
      EXPECT_NEAR(analytic.At(i), (loss(plus) - loss(minus)) / (2 * eps), 1e-7) << which << " " << i;
    }
  };
  check(w1, 0, g1);
  check(w2, 1, g2);
  check(x, 2, gxh);
}

TEST(StageModelTest, WeightGradientIsInputGradPlusDeferredTerms) {
  auto d = MakeCpuDevice(DType::kF32);
  ModelConfig c = Small();
  c.dtype = DType::kF32;
  StageWeights weights = LoadWeights(*d, c, 2);
  auto run = [&](bool split) {
    ForwardSaved saved;
    Tensor y = StageForward(*d, weights, LoadInput(*d, c, 1), saved);
    Tensor gy;
    LossAndGrad(*d, y, LoadLabel(*d, c, 1), gy);
    WeightGradStash stash;
    StageInputGrad(*d, weights, std::move(saved), std::move(gy), false, stash);
    StageWeights grads = ZeroGrads(*d, c.shape);
    if (split) {
      AddGrads(*d, grads, WeightGradTerms(*d, std::move(stash)));
    } else {
      StageWeightGrad(*d, std::move(stash), grads);
    }
    return std::pair{d->Download(grads.w1), d->Download(grads.w2)};
  };
  EXPECT_EQ(run(true), run(false));
}

TEST(StageModelTest, DataComesFromTheSeedAlone) {
  ModelConfig a = Small(), b = Small();
  EXPECT_EQ(MicrobatchInput(a, 3), MicrobatchInput(b, 3));
  EXPECT_NE(MicrobatchInput(a, 3), MicrobatchInput(a, 4));
  EXPECT_NE(MicrobatchInput(a, 3), MicrobatchLabel(a, 3));
  EXPECT_NE(InitialWeight(a, 0, 0), InitialWeight(a, 1, 0));
  b.seed = 12;
  EXPECT_NE(InitialWeight(a, 0, 1), InitialWeight(b, 0, 1));
  const auto w = InitialWeight(a, 0, 1);  // Linear(4H, H): bound 1/sqrt(4H) = 1/4
  for (double v : w) EXPECT_LE(std::abs(v), 0.25);
}

TEST(StageModelTest, RefusesBadShapes) {
  ModelConfig c = Small();
  c.shape.hidden = 0;
  EXPECT_THROW(CheckModelConfig(c), InputError);
  c.shape = {1 << 14, 1 << 10, 4};
  EXPECT_THROW(CheckModelConfig(c), InputError);
  EXPECT_NO_THROW(CheckModelConfig(Small()));
}

}  // namespace
}  // namespace pipeproof
