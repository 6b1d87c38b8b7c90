#include "reference/stage_model.h"

#include <fmt/format.h>

#include <cmath>
#include <numbers>

#include "schedule/errors.h"  // InputError

namespace pipeproof {
namespace {

// SplitMix64: a counter-based generator. Each value depends only on (seed, stream, index).
uint64_t Mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in (0, 1), never 0 (Box-Muller takes its logarithm).
double Unit(uint64_t seed, uint64_t stream, uint64_t index) {
  const uint64_t bits = Mix(Mix(seed ^ Mix(stream)) + index);
  return (static_cast<double>(bits >> 11) + 0.5) * 0x1.0p-53;
}

enum Stream : uint64_t { kWeight = 1, kInput = 2, kLabel = 3 };

std::vector<double> Normal(uint64_t seed, uint64_t stream, int64_t count) {
  std::vector<double> out(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    const double u1 = Unit(seed, stream, 2 * static_cast<uint64_t>(i));
    const double u2 = Unit(seed, stream, 2 * static_cast<uint64_t>(i) + 1);
    out[i] = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }
  return out;
}

uint64_t StreamId(Stream kind, uint64_t a, uint64_t b = 0) { return (kind << 56) ^ (a << 24) ^ b; }

}  // namespace

void CheckModelConfig(const ModelConfig& c) {
  auto check = [](const char* what, int v) {
    if (v < 1 || v > kMaxModelDimension) {
      throw InputError(fmt::format("{} is {}, outside 1..{}", what, v, kMaxModelDimension));
    }
  };
  check("--hidden", c.shape.hidden);
  check("--seq", c.shape.seq);
  check("--micro-batch-size", c.shape.micro_batch_size);
  const int64_t rows = int64_t{c.shape.seq} * c.shape.micro_batch_size;
  const int64_t largest = std::max<int64_t>(rows, c.shape.hidden) * 4 * c.shape.hidden;
  if (largest > (int64_t{1} << 28)) {
    throw InputError(fmt::format("tensors of {} elements are too large for the CPU device (limit 2^28)", largest));
  }
}

std::string Describe(const ModelConfig& c) {
  return fmt::format("hidden {}, seq {}, micro-batch {}, {}, model seed {}", c.shape.hidden, c.shape.seq,
                     c.shape.micro_batch_size, DTypeName(c.dtype), c.seed);
}

std::vector<double> InitialWeight(const ModelConfig& c, int block, int layer) {
  const int h = c.shape.hidden;
  const int in = layer == 0 ? h : 4 * h;
  const int64_t count = int64_t{4} * h * h;
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  const uint64_t stream = StreamId(kWeight, static_cast<uint64_t>(block), static_cast<uint64_t>(layer));
  std::vector<double> out(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) out[i] = (2.0 * Unit(c.seed, stream, i) - 1.0) * bound;
  return out;
}

std::vector<double> MicrobatchInput(const ModelConfig& c, int microbatch) {
  return Normal(c.seed, StreamId(kInput, static_cast<uint64_t>(microbatch)),
                int64_t{c.shape.Rows()} * c.shape.hidden);
}

std::vector<double> MicrobatchLabel(const ModelConfig& c, int microbatch) {
  return Normal(c.seed, StreamId(kLabel, static_cast<uint64_t>(microbatch)),
                int64_t{c.shape.Rows()} * c.shape.hidden);
}

namespace {
Tensor Load(Device& device, int rows, int cols, const std::vector<double>& values) {
  Tensor t = device.Allocate(rows, cols);
  device.Upload(values, t);
  return t;
}
}  // namespace

StageWeights LoadWeights(Device& device, const ModelConfig& c, int block) {
  const int h = c.shape.hidden;
  return {Load(device, 4 * h, h, InitialWeight(c, block, 0)),
          Load(device, h, 4 * h, InitialWeight(c, block, 1))};
}

StageWeights ZeroGrads(Device& device, const ModelShape& shape) {
  const int h = shape.hidden;
  StageWeights g{device.Allocate(4 * h, h), device.Allocate(h, 4 * h)};
  device.Zero(g.w1);
  device.Zero(g.w2);
  return g;
}

Tensor LoadInput(Device& device, const ModelConfig& c, int microbatch) {
  return Load(device, c.shape.Rows(), c.shape.hidden, MicrobatchInput(c, microbatch));
}

Tensor LoadLabel(Device& device, const ModelConfig& c, int microbatch) {
  return Load(device, c.shape.Rows(), c.shape.hidden, MicrobatchLabel(c, microbatch));
}

Tensor StageForward(Device& device, const StageWeights& weights, Tensor x, ForwardSaved& saved) {
  const int n = x.rows();
  const int wide = weights.w1.rows();
  saved.h = device.Allocate(n, wide);
  device.LinearForward(x, weights.w1, saved.h);
  saved.a = device.Allocate(n, wide);
  device.Gelu(saved.h, saved.a);
  Tensor y = device.Allocate(n, weights.w2.rows());
  device.LinearForward(saved.a, weights.w2, y);
  saved.x = std::move(x);
  return y;
}

Tensor LossAndGrad(Device& device, const Tensor& y, const Tensor& label, Tensor& gy) {
  Tensor loss = device.Allocate(1, 1);
  gy = device.Allocate(y.rows(), y.cols());
  device.MseLoss(y, label, loss, gy);
  return loss;
}

Tensor StageInputGrad(Device& device, const StageWeights& weights, ForwardSaved saved, Tensor gy,
                      bool want_input_grad, WeightGradStash& stash) {
  const int n = gy.rows();
  Tensor ga = device.Allocate(n, weights.w2.cols());
  device.LinearInputGrad(gy, weights.w2, ga);
  Tensor gh = device.Allocate(n, weights.w2.cols());
  device.GeluBackward(saved.h, ga, gh);
  ga.Reset();
  saved.h.Reset();
  Tensor gx;
  if (want_input_grad) {
    gx = device.Allocate(n, weights.w1.cols());
    device.LinearInputGrad(gh, weights.w1, gx);
  }
  stash = {std::move(gy), std::move(saved.a), std::move(gh), std::move(saved.x)};
  return gx;
}

StageWeights WeightGradTerms(Device& device, WeightGradStash stash) {
  StageWeights terms;
  terms.w2 = device.Allocate(stash.gy.cols(), stash.a.cols());
  device.LinearWeightGrad(stash.gy, stash.a, terms.w2);
  stash.gy.Reset();
  stash.a.Reset();
  terms.w1 = device.Allocate(stash.gh.cols(), stash.x.cols());
  device.LinearWeightGrad(stash.gh, stash.x, terms.w1);
  return terms;
}

void AddGrads(Device& device, StageWeights& grads, const StageWeights& terms) {
  device.AddInPlace(grads.w2, terms.w2);
  device.AddInPlace(grads.w1, terms.w1);
}

void StageWeightGrad(Device& device, WeightGradStash stash, StageWeights& grads) {
  AddGrads(device, grads, WeightGradTerms(device, std::move(stash)));
}

}  // namespace pipeproof
