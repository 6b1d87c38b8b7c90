// The stage model of the DualPipe reference's example: Linear(H, 4H) -> GELU (erf) -> Linear(4H, H),
// no bias, MSE loss against a label at the last stage of a microbatch's route. Its backward is
// split as the reference splits it: the input-gradient part (I) right away, the weight-gradient
// part (W) possibly later, from what I leaves behind. B is I followed at once by W.
//
// Weights and data come from a seed through a counter-based generator, so any process can make
// any block's weights or any microbatch's data on its own, in any order, and get the same bits.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "reference/device.h"

namespace pipeproof {

struct ModelShape {
  int hidden = 32;           // H
  int seq = 16;              // L
  int micro_batch_size = 2;  // b
  int Rows() const { return seq * micro_batch_size; }  // rows of an activation: b x L tokens
};

struct ModelConfig {
  ModelShape shape;
  DType dtype = DType::kF64;
  uint64_t seed = 0;  // weights and data
};

// The largest --hidden, --seq and --micro-batch-size; their products are checked apart.
inline constexpr int kMaxModelDimension = 1 << 20;
// Throws InputError when a size is out of range (each at least 1, tensors at most 2^28 elements).
void CheckModelConfig(const ModelConfig& config);
std::string Describe(const ModelConfig& config);  // "hidden 32, seq 16, micro-batch 2, f64, model seed 0"

// Host values before rounding to the dtype. Layer 0 is Linear(H, 4H) with weight [4H, H], layer 1
// is Linear(4H, H) with weight [H, 4H]; initialised as torch.nn.Linear does, U(-1/sqrt(in),
// 1/sqrt(in)). Inputs and labels are standard normal, [L b, H].
std::vector<double> InitialWeight(const ModelConfig& config, int block, int layer);
std::vector<double> MicrobatchInput(const ModelConfig& config, int microbatch);
std::vector<double> MicrobatchLabel(const ModelConfig& config, int microbatch);

// One parameter block on a device: its two weights, or their gradients.
struct StageWeights {
  Tensor w1;  // [4H, H]
  Tensor w2;  // [H, 4H]
};
StageWeights LoadWeights(Device& device, const ModelConfig& config, int block);
StageWeights ZeroGrads(Device& device, const ModelShape& shape);
Tensor LoadInput(Device& device, const ModelConfig& config, int microbatch);
Tensor LoadLabel(Device& device, const ModelConfig& config, int microbatch);

// What a forward keeps for its backward.
struct ForwardSaved {
  Tensor x;  // input [N, H]
  Tensor h;  // pre-activation [N, 4H]
  Tensor a;  // GELU output [N, 4H]
};

// What the input-gradient backward leaves for the weight gradient.
struct WeightGradStash {
  Tensor gy;  // output gradient [N, H]   (for W2)
  Tensor a;   // GELU output [N, 4H]      (for W2)
  Tensor gh;  // pre-activation gradient  (for W1)
  Tensor x;   // input                    (for W1)
};

// y = stage(x); x moves into `saved`.
Tensor StageForward(Device& device, const StageWeights& weights, Tensor x, ForwardSaved& saved);

// loss [1, 1] = MSE(y, label); writes d loss / d y into a new tensor `gy`.
Tensor LossAndGrad(Device& device, const Tensor& y, const Tensor& label, Tensor& gy);

// The input-gradient backward (I). Consumes the forward's saved tensors and the output gradient;
// returns the input gradient, or an empty tensor when `want_input_grad` is false (a route's first
// stage: nothing upstream needs it). Frees h and the intermediate gradient at once.
Tensor StageInputGrad(Device& device, const StageWeights& weights, ForwardSaved saved, Tensor gy,
                      bool want_input_grad, WeightGradStash& stash);

// The weight-gradient backward (W): grads.w2 += gy^T a; grads.w1 += gh^T x, each product made in
// a temporary and then added, as the reference's `weight.grad += grad_output.T @ input` does.
// StageWeightGrad = AddGrads(WeightGradTerms(...)); the sequential reference uses the two halves
// to add a stage's terms in the order the schedule added them.
void StageWeightGrad(Device& device, WeightGradStash stash, StageWeights& grads);
StageWeights WeightGradTerms(Device& device, WeightGradStash stash);  // {gh^T x, gy^T a}
void AddGrads(Device& device, StageWeights& grads, const StageWeights& terms);

}  // namespace pipeproof
