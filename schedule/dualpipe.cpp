// DualPipe and DualPipeV, one rank at a time, as the reference's step() runs them.
//
// The reference keeps, per rank, two modules ("phases"), counters of how many chunks each phase
// has computed, sent and received, a list of pending SEND/RECVs that it commits and waits before
// every compute, and a FIFO of deferred weight gradients. DualPipeRank below keeps the same state
// and writes an action wherever the reference would act, so Step() reads like the reference's
// eight steps. DualPipeV is the same algorithm on a V placement: a rank's two stages are r and
// 2R-1-r, every microbatch passes both, and its "half" of the pipeline is all R ranks.

#include <fmt/format.h>

#include <array>
#include <deque>

#include "schedule/generators.h"

namespace pipeproof {
namespace {

// Where a rank sits in the pipeline, in the reference's terms.
struct DualPipeShape {
  int half_ranks = 0;    // DualPipe: R/2; DualPipeV: R
  int half_rank = 0;     // DualPipe: min(r, R-1-r); DualPipeV: r
  int half_chunks = 0;   // microbatches per direction: DualPipe M/2; DualPipeV M
  bool special = false;  // DualPipe: a middle rank; DualPipeV: the last rank
  bool swap_phases = false;  // DualPipe's second half of ranks: phase 0 is direction 1
  std::array<int, 2> stage{};             // the stage of module 0 and module 1
  std::array<int, 2> first_microbatch{};  // microbatch of module p's chunk 0
};

class DualPipeRank {
 public:
  DualPipeRank(const Schedule& topology, const DualPipeShape& shape, bool overlap)
      : topology_(topology), routes_(topology), shape_(shape), overlap_(overlap) {}

  std::vector<Action> Step() {
    const int n = shape_.half_ranks, h = shape_.half_rank, special = shape_.special;

    // Step 1: nF0
    for (int i = 0; i < (n - h - 1) * 2; ++i) ForwardChunk(0);

    // Step 2: nF0F1
    RecvForward(0);
    for (int i = 0; i < h + 1; ++i) {
      ForwardChunk(0, /*recv=*/false, /*send=*/special);
      RecvForward(0);
      ForwardChunk(1, /*recv=*/true, /*send=*/!special || i < h);
      if (!special) SendForward(0);
    }

    // Step 3: nB1W1F1 (zero bubble)
    for (int i = 0; i < n - h - 1; ++i) {
      BackwardChunk(1, /*zero_bubble=*/true);
      RecvForward(1);
      WeightChunk();
      ForwardChunk(1, /*recv=*/false);
    }

    // Step 4 (main step): nF0B1F1B0
    for (int i = 0; i < shape_.half_chunks - 2 * n + h + 1; ++i) {
      if (i == 0 && special) {
        // The reference does not overlap these two chunks, to shrink the bubble.
        ForwardChunk(0, /*recv=*/false, /*send=*/false);
        SendForward(1);
        BackwardChunk(1, /*zero_bubble=*/false, /*recv=*/true, /*send=*/false);
        SendForward(0);
        SendBackward(1);
      } else {
        ForwardBackwardChunk(0, 1, /*recv_forward=*/i > 0);
      }
      ForwardBackwardChunk(1, 0);
    }

    // Step 5: nB1F1B0
    for (int i = 0; i < n - h - 1; ++i) {
      BackwardChunk(1);
      ForwardBackwardChunk(1, 0);
    }

    // Step 6: nB1B0 (the second half of the chunks use zero bubble)
    bool zero_bubble = false;
    for (int i = 0; i < h + 1; ++i) {
      if (i == (h + 1) / 2 && h % 2 == 1) zero_bubble = true;
      BackwardChunk(1, zero_bubble);
      if (i == (h + 1) / 2 && h % 2 == 0) zero_bubble = true;
      BackwardChunk(0, zero_bubble);
    }

    // Step 7: nWB0 (zero bubble)
    for (int i = 0; i < n - h - 1; ++i) {
      WeightChunk();
      BackwardChunk(0, /*zero_bubble=*/true);
    }

    // Step 8: nW
    for (int i = 0; i < h + 1; ++i) WeightChunk();

    CommitAndWait();
    return std::move(program_);
  }

 private:
  // The chunks: a compute wrapped in the communication the reference does around it.
  void ForwardChunk(int phase, bool recv = true, bool send = true) {
    if (recv) RecvForward(phase);
    CommitAndWait();
    program_.push_back(Forward(phase));
    if (send) SendForward(phase);
  }

  void BackwardChunk(int phase, bool zero_bubble = false, bool recv = true, bool send = true) {
    if (recv) RecvBackward(phase);
    CommitAndWait();
    program_.push_back(Backward(phase, zero_bubble));
    if (send) SendBackward(phase);
  }

  void ForwardBackwardChunk(int forward_phase, int backward_phase, bool recv_forward = true) {
    if (recv_forward) RecvForward(forward_phase);
    RecvBackward(backward_phase);
    CommitAndWait();
    if (overlap_) {
      Action f = Forward(forward_phase), b = Backward(backward_phase, false);
      program_.push_back(Action::OverlapFB(f.stage, f.microbatch, b.op, b.stage, b.microbatch));
    } else {  // a module without overlapped_forward_backward: F, then B
      program_.push_back(Forward(forward_phase));
      program_.push_back(Backward(backward_phase, false));
    }
    SendForward(forward_phase);
    SendBackward(backward_phase);
  }

  void WeightChunk() {
    CommitAndWait();
    program_.push_back(deferred_weights_.front());  // the reference assumes FIFO
    deferred_weights_.pop_front();
  }

  // Computes, with the reference's per-phase chunk counters.
  Action Forward(int phase) {
    int module = Module(phase);
    return Action::Compute(Op::kForward, shape_.stage[module],
                           Microbatch(module, computed_forward_[module]++));
  }

  Action Backward(int phase, bool zero_bubble) {
    int module = Module(phase);
    int stage = shape_.stage[module];
    int microbatch = Microbatch(module, computed_backward_[module]++);
    if (!zero_bubble) return Action::Compute(Op::kBackward, stage, microbatch);
    deferred_weights_.push_back(Action::Compute(Op::kWeightGrad, stage, microbatch));
    return Action::Compute(Op::kInputGrad, stage, microbatch);
  }

  // Communication: appended to the pending group where the reference appends it; a neighbour
  // on the same rank (DualPipeV's turn at the last rank) or none at all means no message.
  void RecvForward(int phase) { AppendComm(Op::kRecvF, phase, received_forward_); }
  void SendForward(int phase) { AppendComm(Op::kSendF, phase, sent_forward_); }
  void RecvBackward(int phase) { AppendComm(Op::kRecvB, phase, received_backward_); }
  void SendBackward(int phase) { AppendComm(Op::kSendB, phase, sent_backward_); }

  void AppendComm(Op op, int phase, std::array<int, 2>& counter) {
    int module = Module(phase);
    Task task{op, shape_.stage[module], Microbatch(module, counter[module])};
    std::optional<Message> message = MessageOf(topology_, routes_, task);
    if (!message || message->peer == topology_.placement[task.stage]) return;
    ++counter[module];
    program_.push_back(Action::Comm(op, task.stage, task.microbatch));
    ++pending_comm_;
  }

  void CommitAndWait() {
    if (pending_comm_ == 0) return;  // the reference commits nothing when nothing is pending
    program_.push_back(Action::Wait());
    pending_comm_ = 0;
  }

  int Module(int phase) const { return phase ^ static_cast<int>(shape_.swap_phases); }
  int Microbatch(int module, int chunk) const { return shape_.first_microbatch[module] + chunk; }

  const Schedule& topology_;
  RouteIndex routes_;
  DualPipeShape shape_;
  bool overlap_;
  std::vector<Action> program_;
  std::array<int, 2> computed_forward_{}, computed_backward_{};
  std::array<int, 2> sent_forward_{}, sent_backward_{}, received_forward_{}, received_backward_{};
  int pending_comm_ = 0;
  std::deque<Action> deferred_weights_;
};

// Both kinds have 2R stages, rank r holding stages r and 2R-1-r (the V placement).
Schedule TwoStagesPerRank(const char* kind, int ranks, int microbatches) {
  CheckLimits(ranks, 2 * int64_t{ranks}, microbatches);
  Schedule s;
  s.kind = kind;
  s.ranks = ranks;
  s.stages = 2 * ranks;
  s.microbatches = microbatches;
  s.placement = VPlacement(ranks, 2 * ranks);
  return s;
}

// Completes the topology, then writes every rank's program as the reference's step() runs it.
template <typename ShapeOfRank>
Schedule WithPrograms(Schedule s, bool overlap, ShapeOfRank shape_of_rank) {
  CompleteTopology(s);
  for (int r = 0; r < s.ranks; ++r) s.program[r] = DualPipeRank(s, shape_of_rank(r), overlap).Step();
  return s;
}

}  // namespace

namespace generators {

Schedule DualPipe(const GenerateOptions& o) {
  const int R = o.ranks, M = o.microbatches;
  Schedule s = TwoStagesPerRank("dualpipe", R, M);
  // Direction 0: stages 0..R-1, stage s on rank s. Direction 1: stages R..2R-1, stage R+s on
  // rank R-1-s holding the parameters of stage s. Microbatches split evenly between directions.
  for (int st = 0; st < 2 * R; ++st) s.params.push_back(st < R ? st : st - R);
  for (int m = 0; m < M; ++m) {
    std::vector<int> route;
    for (int i = 0; i < R; ++i) route.push_back(m < M / 2 ? i : R + i);
    s.routes.push_back(route);
  }
  return WithPrograms(std::move(s), o.overlap, [&](int r) {
    DualPipeShape shape;
    shape.half_ranks = R / 2;
    shape.half_rank = std::min(r, R - 1 - r);
    shape.half_chunks = M / 2;
    shape.special = r == R / 2 - 1 || r == R / 2;
    shape.swap_phases = r >= R / 2;
    shape.stage = {r, 2 * R - 1 - r};
    shape.first_microbatch = {0, M / 2};
    return shape;
  });
}

Schedule DualPipeV(const GenerateOptions& o) {
  const int R = o.ranks, M = o.microbatches;
  // Every microbatch passes all 2R stages, down the V and back up.
  return WithPrograms(TwoStagesPerRank("dualpipev", R, M), o.overlap, [&](int r) {
    DualPipeShape shape;
    shape.half_ranks = R;
    shape.half_rank = r;
    shape.half_chunks = M;
    shape.special = r == R - 1;
    shape.stage = {r, 2 * R - 1 - r};
    shape.first_microbatch = {0, 0};
    return shape;
  });
}

}  // namespace generators
}  // namespace pipeproof
