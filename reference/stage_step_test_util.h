// One stage's whole step on a device, for the device tests that compare bits (cpu_device_test,
// cuda_device_test): the forward, loss, input gradient and weight gradients of two microbatches,
// every product and kernel the device has, downloaded in order.
#pragma once

#include <utility>
#include <vector>

#include "reference/device.h"
#include "reference/stage_model.h"

namespace pipeproof::testing {

inline std::vector<HostTensor> StageStep(Device& d, const ModelConfig& config) {
  std::vector<HostTensor> out;
  StageWeights weights = LoadWeights(d, config, 0);
  StageWeights grads = ZeroGrads(d, config.shape);
  for (int m = 0; m < 2; ++m) {
    ForwardSaved saved;
    Tensor y = StageForward(d, weights, LoadInput(d, config, m), saved);
    Tensor label = LoadLabel(d, config, m), gy;
    Tensor loss = LossAndGrad(d, y, label, gy);
    out.push_back(d.Download(loss));
    out.push_back(d.Download(y));
    WeightGradStash stash;
    Tensor gx = StageInputGrad(d, weights, std::move(saved), std::move(gy), true, stash);
    out.push_back(d.Download(gx));
    StageWeightGrad(d, std::move(stash), grads);
  }
  out.push_back(d.Download(grads.w1));
  out.push_back(d.Download(grads.w2));
  return out;
}

}  // namespace pipeproof::testing
