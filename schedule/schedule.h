// The schedule model: ranks, stages, microbatches, where stages live, which parameter block
// each stage holds, the route every microbatch takes, and each rank's actions in program order.
// See docs/design.md, "The schedule model". Every other library reads schedules through this header.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "schedule/errors.h"

namespace pipeproof {

// The kinds of action, spelled as PyTorch spells them (see ToString/ParseAction).
enum class Op : uint8_t {
  kForward,     // sFm
  kBackward,    // sBm: input gradient and weight gradient together
  kInputGrad,   // sIm: input gradient only
  kWeightGrad,  // sWm: the weight gradient of an earlier sIm
  kOverlapFB,   // (sFm;tBn)OVERLAP_F_B: forward and backward run as one unit
  kSendF,       // sSEND_Fm: send stage s's output to the next stage's rank
  kRecvF,       // sRECV_Fm: receive stage s's input from the previous stage's rank
  kSendB,       // sSEND_Bm: send stage s's input gradient to the previous stage's rank
  kRecvB,       // sRECV_Bm: receive stage s's output gradient from the next stage's rank
  kWait,        // WAIT: post the SEND/RECVs since the last WAIT as one group, block until done
  // PyTorch's runtime (every runtime order since 2.15):
  kWaitSendF,       // sWAIT_SEND_Fm: block the rank until the earlier sSEND_Fm has completed
  kWaitSendB,       // sWAIT_SEND_Bm: the same for sSEND_Bm
  kUnshard,         // sUNSHARD: gather stage s's sharded parameters (data-parallel group)
  kReshard,         // sRESHARD: drop them again
  kReduceGrad,      // sREDUCE_GRAD: start reducing stage s's gradients over the data-parallel group
  kWaitReduceGrad,  // sWAIT_REDUCE_GRAD: wait for that reduction
};

// Inline: every check asks these once or more per action, millions of times on a large schedule.
// F, B, I, W, OVERLAP_F_B
inline bool IsCompute(Op op) { return op <= Op::kOverlapFB; }
// SEND_F, RECV_F, SEND_B, RECV_B
inline bool IsComm(Op op) { return op >= Op::kSendF && op <= Op::kRecvB; }
inline bool IsSend(Op op) { return op == Op::kSendF || op == Op::kSendB; }
inline bool IsRecv(Op op) { return op == Op::kRecvF || op == Op::kRecvB; }
// WAIT_SEND_F, WAIT_SEND_B
inline bool IsWaitSend(Op op) { return op == Op::kWaitSendF || op == Op::kWaitSendB; }
// UNSHARD, RESHARD, REDUCE_GRAD, WAIT_REDUCE_GRAD: collectives of the data-parallel group. They
// run on another communicator, so they hold no pipeline stream; they name a stage and no
// microbatch (kept as 0).
inline bool IsDataParallel(Op op) { return op >= Op::kUnshard && op <= Op::kWaitReduceGrad; }
// The SEND that a WAIT_SEND waits for (kSendF for kWaitSendF, kSendB for kWaitSendB), and back.
Op SentBy(Op wait_send);
Op WaitSendFor(Op send);

// One unit of work on one stage and microbatch: a compute (F, B, I, W) or a SEND/RECV.
struct Task {
  Op op = Op::kForward;
  int32_t stage = 0;
  int32_t microbatch = 0;
  friend bool operator==(const Task&, const Task&) = default;
};

// One entry in a rank's program. OVERLAP_F_B carries two tasks: `stage`/`microbatch` are its
// forward, `back` its backward (op kBackward or kInputGrad). Other actions use only the first;
// a WAIT has none.
struct Action {
  Op op = Op::kForward;
  int32_t stage = 0;
  int32_t microbatch = 0;
  Task back{Op::kBackward, 0, 0};

  static Action Compute(Op op, int stage, int microbatch) { return {op, stage, microbatch, {}}; }
  static Action Comm(Op op, int stage, int microbatch) { return {op, stage, microbatch, {}}; }
  static Action Wait() { return {Op::kWait, 0, 0, {}}; }
  static Action WaitSend(Op send, int stage, int microbatch) {
    return {WaitSendFor(send), stage, microbatch, {}};
  }
  static Action DataParallel(Op op, int stage) { return {op, stage, 0, {}}; }
  static Action OverlapFB(int f_stage, int f_mb, Op back_op, int b_stage, int b_mb) {
    return {Op::kOverlapFB, f_stage, f_mb, {back_op, b_stage, b_mb}};
  }

  // The single tasks this action consists of: none for WAIT, two for OVERLAP_F_B, else itself
  // (a WAIT_SEND or a data-parallel action is a task that names its stage, not a compute).
  int TaskCount() const { return op == Op::kWait ? 0 : op == Op::kOverlapFB ? 2 : 1; }
  Task TaskAt(int i) const {  // inline: every check calls it for every action
    if (op == Op::kOverlapFB) return i == 0 ? Task{Op::kForward, stage, microbatch} : back;
    return Task{op, stage, microbatch};
  }

  friend bool operator==(const Action& a, const Action& b);
};

// Per action of a rank's program: for a WAIT_SEND, the position of the SEND it waits for (the
// last one of its stage, microbatch and direction before it; -1 when there is none), else -1.
std::vector<int> WaitedSendPositions(const std::vector<Action>& program);

// PyTorch's spelling: "0F0", "3I2", "7SEND_B4", "(0F3;7B5)OVERLAP_F_B", "WAIT",
// "7WAIT_SEND_B4", "3UNSHARD".
std::string ToString(const Action& action);
std::string ToString(const Task& task);
std::string_view OpName(Op op);  // "F", ..., "SEND_F", ..., "WAIT", "WAIT_SEND_F", "UNSHARD", ...

struct ActionSyntax {
  bool legacy_bw = false;  // accept PyTorch's old "BW" spelling of a full backward
};
// Parses one action. On error throws InputError whose message says what is wrong; `column`
// receives the 0-based offset inside `text` where the problem is (for file:line:col).
Action ParseAction(std::string_view text, const ActionSyntax& syntax = {}, int* column = nullptr);

// How a stage is placed on ranks, for the common cases (the model keeps an explicit list).
std::vector<int> LoopPlacement(int ranks, int stages);  // stage s on rank s % R
std::vector<int> VPlacement(int ranks, int stages);     // s on s for s < R, else on 2R-1-s

struct Schedule {
  int ranks = 0;
  int stages = 0;
  int microbatches = 0;
  std::vector<int> placement;            // stage -> rank
  std::vector<int> params;               // stage -> parameter block (shared blocks sum grads)
  std::vector<std::vector<int>> routes;  // microbatch -> stages it passes, in order
  std::vector<std::vector<Action>> program;  // rank -> actions in program order
  // The generator that made it ("dualpipe", "1f1b", ...), empty for a file of unknown origin.
  // Verification uses it to pick the memory bound.
  std::string kind;
  // A forward-only pass (inference, PyTorch's _ScheduleForwardOnly, or a traced call order whose
  // messages carry nothing back): every stage of every microbatch runs F once and nothing runs a
  // backward. Written "pass forward" (.pps) or "pass": "forward" (JSON); PyTorch's CSV cannot say it.
  bool forward_only = false;

  int ParamBlocks() const;   // 1 + the largest block id
  int64_t ActionCount() const;
  friend bool operator==(const Schedule&, const Schedule&) = default;
};

// A schedule's shape before any action: fills placement (loop), params (identity) and routes
// (all stages in order) where they are empty, then checks every limit and range. Throws
// InputError naming the rule broken.
void CompleteTopology(Schedule& schedule);

// Route lookups in O(1): where a stage sits on a microbatch's route and its neighbours there.
class RouteIndex {
 public:
  explicit RouteIndex(const Schedule& schedule);
  bool OnRoute(int stage, int microbatch) const { return Position(stage, microbatch) >= 0; }
  int Position(int stage, int microbatch) const;  // -1 when the stage is not on the route
  int Prev(int stage, int microbatch) const;      // -1 at the route's first stage or off route
  int Next(int stage, int microbatch) const;      // -1 at the route's last stage or off route
  bool IsFirst(int stage, int microbatch) const;
  bool IsLast(int stage, int microbatch) const;
  int RouteLength(int microbatch) const;

 private:
  int stages_ = 0;
  std::vector<int> route_of_;                // microbatch -> distinct route id
  std::vector<std::vector<int>> routes_;     // distinct routes
  std::vector<std::vector<int32_t>> pos_;    // route id -> stage -> position or -1
};

// Inline: the checks look a neighbour up for every SEND, RECV and compute.
inline int RouteIndex::Position(int stage, int microbatch) const {
  if (microbatch < 0 || microbatch >= static_cast<int>(route_of_.size())) return -1;
  if (stage < 0 || stage >= stages_) return -1;
  return pos_[route_of_[microbatch]][stage];
}

inline int RouteIndex::Prev(int stage, int microbatch) const {
  int p = Position(stage, microbatch);
  return p <= 0 ? -1 : routes_[route_of_[microbatch]][p - 1];
}

inline int RouteIndex::Next(int stage, int microbatch) const {
  int p = Position(stage, microbatch);
  if (p < 0) return -1;
  const std::vector<int>& route = routes_[route_of_[microbatch]];
  return p + 1 < static_cast<int>(route.size()) ? route[p + 1] : -1;
}

// What a message carries: an activation (stage `from`'s output, `to`'s input) or a gradient
// (stage `from`'s input gradient, `to`'s output gradient), of one microbatch.
struct Payload {
  enum class Kind : uint8_t { kActivation, kGradient } kind = Kind::kActivation;
  int32_t from = 0;
  int32_t to = 0;
  int32_t microbatch = 0;
  friend bool operator==(const Payload&, const Payload&) = default;
};
std::string ToString(const Payload& payload);  // "activation 2->3 mb 5"

// The payload a SEND carries or a RECV expects, and the rank at the other end; nullopt when the
// route has no neighbour in that direction (a SEND_F at a route's last stage, say).
struct Message {
  Payload payload;
  int peer = 0;
};
std::optional<Message> MessageOf(const Schedule& schedule, const RouteIndex& routes,
                                 const Task& comm);

// Which NCCL stream carries a point-to-point op (docs/design.md, "Stream layout"). Program order,
// rendezvous and FIFO matching hold within a stream; a rank's streams run independently, as far
// as the hardware lets their kernels run at the same time.
//  kRank: one stream per rank for all its point-to-point traffic (one communicator: PyTorch's
//         default eagerly initialised `nccl` backend, DualPipe's batch_isend_irecv);
//  kPair: one per unordered rank pair (`nccl-lazy`: a two-rank communicator per pair, set up
//         lazily at the first op between the two ranks);
//  kEdge: one per directed rank edge (torch.distributed.config.pipeline_per_edge_p2p).
// FIFO matching is per ordered rank pair in all three, since every message from p to q travels
// on one stream whatever the layout.
enum class StreamLayout : uint8_t { kRank, kPair, kEdge };
inline constexpr StreamLayout kStreamLayouts[] = {StreamLayout::kRank, StreamLayout::kPair,
                                                  StreamLayout::kEdge};
std::optional<StreamLayout> StreamLayoutFromName(std::string_view name);  // rank, pair, edge
std::string_view StreamLayoutName(StreamLayout layout);
// The stream, numbered among one rank's streams, that carries that rank's op with `peer`.
int StreamOf(StreamLayout layout, int peer, bool send);

// The passes a compute depends on, by pass rather than by op: the backward pass of (s, m) is
// made by B or by I; the weight pass by B or by W.
enum class Pass : uint8_t { kForward, kBackward, kWeight };
struct PassKey {
  Pass pass = Pass::kForward;
  int32_t stage = 0;
  int32_t microbatch = 0;
  friend bool operator==(const PassKey&, const PassKey&) = default;
};
std::string ToString(const PassKey& key);  // "F 2 mb 5", "B 2 mb 5" (B covers I), "W 2 mb 5"

// The passes a compute produces or needs: two at most, kept in place, since every check asks
// for them for every compute and a heap allocation each would cost more than the answer.
class PassKeys {
 public:
  PassKeys() = default;
  PassKeys(std::initializer_list<PassKey> keys) {
    for (const PassKey& key : keys) push_back(key);
  }
  void push_back(const PassKey& key) { keys_.at(size_++) = key; }
  const PassKey* begin() const { return keys_.data(); }
  const PassKey* end() const { return keys_.data() + size_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  friend bool operator==(const PassKeys& a, const PassKeys& b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end());
  }

 private:
  std::array<PassKey, 2> keys_{};
  size_t size_ = 0;
};

// The passes a compute task produces (B produces kBackward and kWeight).
PassKeys Produces(const Task& compute);
// The passes a compute task needs, each with the stage that produces it (docs/design.md, "Data
// dependencies"). Whether that stage is on the same rank decides local versus received.
PassKeys Needs(const Task& compute, const RouteIndex& routes);

}  // namespace pipeproof
