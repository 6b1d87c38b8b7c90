#include "reference/reference.h"

#include <fmt/format.h>

#include <map>
#include <stdexcept>

namespace pipeproof {

AccumulationOrder AccumulationOrderOf(const Schedule& schedule, AccumulationMode mode) {
  AccumulationOrder order;
  order.blocks.resize(schedule.ParamBlocks());
  if (mode == AccumulationMode::kNatural) {
    for (auto& partials : order.blocks) partials.resize(1);
    RouteIndex routes(schedule);
    for (int m = 0; m < schedule.microbatches; ++m) {
      // Backward walks the route from its end: that is the order the loop below produces terms.
      const std::vector<int>& route = schedule.routes[m];
      for (auto it = route.rbegin(); it != route.rend(); ++it) {
        order.blocks[schedule.params[*it]][0].push_back({*it, m});
      }
    }
    return order;
  }
  std::vector<std::vector<GradTerm>> by_stage(schedule.stages);
  for (const auto& actions : schedule.program) {
    for (const Action& a : actions) {
      for (int t = 0; t < a.TaskCount(); ++t) {
        const Task task = a.TaskAt(t);
        if (task.op == Op::kBackward || task.op == Op::kWeightGrad) {
          by_stage[task.stage].push_back({task.stage, task.microbatch});
        }
      }
    }
  }
  for (int s = 0; s < schedule.stages; ++s) {
    if (!by_stage[s].empty()) order.blocks[schedule.params[s]].push_back(std::move(by_stage[s]));
  }
  return order;
}

BlockGrads ZeroBlockGrads(const ModelConfig& config) {
  const int h = config.shape.hidden;
  return {HostTensor::Zeros(config.dtype, 4 * h, h), HostTensor::Zeros(config.dtype, h, 4 * h)};
}

BlockGrads CombineStageGrads(const Schedule& schedule, const ModelConfig& config, int block,
                             const std::vector<BlockGrads>& stage_grads) {
  std::optional<BlockGrads> sum;
  for (int s = 0; s < schedule.stages; ++s) {
    if (schedule.params[s] != block || stage_grads[s].w1.bytes.empty()) continue;
    if (!sum) {
      sum = stage_grads[s];
    } else {
      sum->w1 = Sum(sum->w1, stage_grads[s].w1);
      sum->w2 = Sum(sum->w2, stage_grads[s].w2);
    }
  }
  return sum ? *sum : ZeroBlockGrads(config);
}

namespace {

// Adds weight-gradient terms to their partial sums in the planned order, whatever order they are
// produced in: a term that comes early waits (on the device) until its predecessors are in.
class OrderedAccumulator {
 public:
  OrderedAccumulator(const AccumulationOrder& order, const ModelConfig& config, Device& device)
      : order_(order), config_(config), device_(device) {
    const ModelShape& shape = config.shape;
    for (size_t b = 0; b < order.blocks.size(); ++b) {
      partials_.emplace_back();
      for (size_t p = 0; p < order.blocks[b].size(); ++p) {
        partials_.back().push_back({ZeroGrads(device, shape), 0, {}});
        for (size_t i = 0; i < order.blocks[b][p].size(); ++i) {
          const GradTerm& t = order.blocks[b][p][i];
          where_[{t.stage, t.microbatch}] = {b, p, i};
        }
      }
    }
  }

  void Add(int stage, int microbatch, StageWeights terms) {
    auto it = where_.find({stage, microbatch});
    if (it == where_.end()) {
      throw std::logic_error(fmt::format("reference: no place for the weight gradient of stage {} "
                                         "microbatch {} in the accumulation order", stage, microbatch));
    }
    auto [b, p, i] = it->second;
    Partial& partial = partials_[b][p];
    partial.early.emplace(i, std::move(terms));
    for (auto next = partial.early.find(partial.next); next != partial.early.end();
         next = partial.early.find(partial.next)) {
      AddGrads(device_, partial.sum, next->second);
      partial.early.erase(next);
      ++partial.next;
    }
  }

  std::vector<BlockGrads> Finish() {
    std::vector<BlockGrads> blocks;
    for (size_t b = 0; b < partials_.size(); ++b) {
      std::optional<BlockGrads> sum;
      for (size_t p = 0; p < partials_[b].size(); ++p) {
        Partial& partial = partials_[b][p];
        if (partial.next != order_.blocks[b][p].size()) {
          throw std::logic_error(fmt::format("reference: block {} partial sum {} got {} of {} terms",
                                             b, p, partial.next, order_.blocks[b][p].size()));
        }
        BlockGrads host{device_.Download(partial.sum.w1), device_.Download(partial.sum.w2)};
        if (!sum) {
          sum = std::move(host);
        } else {
          sum->w1 = Sum(sum->w1, host.w1);
          sum->w2 = Sum(sum->w2, host.w2);
        }
      }
      blocks.push_back(sum ? std::move(*sum) : ZeroBlockGrads(config_));
    }
    return blocks;
  }

 private:
  struct Partial {
    StageWeights sum;
    size_t next = 0;
    std::map<size_t, StageWeights> early;
  };
  struct Place {
    size_t block, partial, index;
  };
  const AccumulationOrder& order_;
  const ModelConfig& config_;
  Device& device_;
  std::vector<std::vector<Partial>> partials_;
  std::map<std::pair<int, int>, Place> where_;
};

}  // namespace

StepResults RunReference(const Schedule& schedule, const ModelConfig& config,
                         const AccumulationOrder& order, Device& device) {
  if (device.dtype() != config.dtype) throw std::logic_error("reference: device dtype differs");
  std::vector<StageWeights> weights;
  for (int b = 0; b < schedule.ParamBlocks(); ++b) weights.push_back(LoadWeights(device, config, b));
  OrderedAccumulator grads(order, config, device);
  StepResults results;
  for (int m = 0; m < schedule.microbatches; ++m) {
    const std::vector<int>& route = schedule.routes[m];
    std::vector<ForwardSaved> saved(route.size());
    Tensor x = LoadInput(device, config, m);
    for (size_t i = 0; i < route.size(); ++i) {
      x = StageForward(device, weights[schedule.params[route[i]]], std::move(x), saved[i]);
    }
    Tensor gy;
    Tensor label = LoadLabel(device, config, m);
    Tensor loss = LossAndGrad(device, x, label, gy);
    results.losses.push_back(device.Download(loss));
    results.outputs.push_back(device.Download(x));
    for (size_t i = route.size(); i-- > 0;) {
      WeightGradStash stash;
      const StageWeights& w = weights[schedule.params[route[i]]];
      gy = StageInputGrad(device, w, std::move(saved[i]), std::move(gy), i > 0, stash);
      grads.Add(route[i], m, WeightGradTerms(device, std::move(stash)));
    }
  }
  results.grads = grads.Finish();
  return results;
}

namespace {

// "stages 3 (rank 3) + 12 (rank 4)": who holds a block, in the order their sums are combined.
std::string BlockNote(const Schedule& schedule, int block) {
  std::vector<std::string> parts;
  for (int s = 0; s < schedule.stages; ++s) {
    if (schedule.params[s] == block) parts.push_back(fmt::format("{} (rank {})", s, schedule.placement[s]));
  }
  return fmt::format("{} {}", parts.size() == 1 ? "stage" : "stages", fmt::join(parts, " + "));
}

HostTensor Column(const std::vector<HostTensor>& scalars) {
  HostTensor out = HostTensor::Zeros(scalars.empty() ? DType::kF64 : scalars[0].dtype,
                                     static_cast<int>(scalars.size()), 1);
  if (scalars.empty()) return out;
  const size_t width = DTypeSize(out.dtype);
  for (size_t m = 0; m < scalars.size(); ++m) {
    if (scalars[m].bytes.size() != width) throw std::logic_error("CompareStep: a loss is not a scalar");
    std::copy(scalars[m].bytes.begin(), scalars[m].bytes.end(), out.bytes.begin() + m * width);
  }
  return out;
}

}  // namespace

MismatchReport CompareStep(const Schedule& schedule, const StepResults& run,
                           const StepResults& reference, const ComparePolicy& policy) {
  if (run.losses.size() != reference.losses.size() || run.outputs.size() != reference.outputs.size() ||
      run.grads.size() != reference.grads.size()) {
    throw std::logic_error("CompareStep: the run and the reference hold different tensor counts");
  }
  MismatchReport report;
  report.policy = policy;
  auto add = [&](std::string name, std::string group, std::string note, const HostTensor& a,
                 const HostTensor& b) {
    TensorComparison c = CompareTensors(std::move(name), a, b, policy);
    c.group = std::move(group);
    c.note = std::move(note);
    report.tensors.push_back(std::move(c));
  };
  add("losses", "losses", "one per microbatch, row = microbatch", Column(run.losses),
      Column(reference.losses));
  for (size_t m = 0; m < run.outputs.size(); ++m) {
    const int last = schedule.routes[m].back();
    add(fmt::format("output mb {}", m), "outputs",
        fmt::format("stage {} (rank {}), forward-only step", last, schedule.placement[last]),
        run.outputs[m], reference.outputs[m]);
  }
  for (size_t b = 0; b < run.grads.size(); ++b) {
    const std::string note = BlockNote(schedule, static_cast<int>(b));
    add(fmt::format("block {} linear1.weight.grad", b), "gradients", note, run.grads[b].w1,
        reference.grads[b].w1);
    add(fmt::format("block {} linear2.weight.grad", b), "gradients", note, run.grads[b].w2,
        reference.grads[b].w2);
  }
  return report;
}

}  // namespace pipeproof
