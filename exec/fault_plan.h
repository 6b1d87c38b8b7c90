// Fault plans: every fault of a run written down, so that a run can be replayed exactly and a
// failing plan shrunk. The executor reads them; the NCCL interposer and the fuzz campaign read
// and write the same JSON. A plan names places by per-rank counters over the whole run:
//   - the k-th communication op (SEND or RECV; for the interposer, the k-th ncclSend/ncclRecv),
//   - the k-th compute, the k-th communication unit (a WAIT group or a lone op),
//   - the k-th action (kill), and the k-th message from one rank to another (negative controls).
// A counter beyond what a run has is simply never reached.
//
// Legal faults (a correct executor's results must not change by a single bit):
//   delays before posting a communication op, before delivering a received message, before a
//   compute; straggler ranks (every compute slowed by a factor); shuffled posting order inside a
//   unit that keeps the order of messages on each (sender, receiver) pair; NaN-poisoning of every
//   buffer as it is freed.
// Negative controls (must be caught): a flipped bit in a message, two messages on one rank pair
// swapped, a dropped message, a rank that stops dead.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pipeproof {

// Faults on one rank. Arrays are indexed by the rank's counters; a missing entry means none.
// The delay arrays hold one entry per site of the run, in order; a shorter one covers the first
// sites only (the rest have no delay), a longer one is refused (CheckPlanFits).
struct RankFaults {
  std::vector<uint32_t> post_delay_us;     // per communication op
  std::vector<uint32_t> deliver_delay_us;  // per communication op (receives only)
  std::vector<uint32_t> compute_delay_us;  // per compute
  struct UnitOrder {
    int64_t unit = 0;
    std::vector<int> order;  // posting order: order[k] = the op (in program order) posted k-th
    friend bool operator==(const UnitOrder&, const UnitOrder&) = default;
  };
  std::vector<UnitOrder> unit_orders;  // units posted in another order than written
  double straggler = 1;                // compute slowdown factor (>= 1)

  friend bool operator==(const RankFaults&, const RankFaults&) = default;
};

// The k-th message sent from `from` to `to` in the run.
struct MessageId {
  int from = 0;
  int to = 0;
  int64_t seq = 0;
  friend bool operator==(const MessageId&, const MessageId&) = default;
};

enum class CorruptKind { kBitflip, kSwap, kDrop };
std::string_view CorruptKindName(CorruptKind kind);  // "bitflip", "swap", "drop"
std::optional<CorruptKind> CorruptKindFromName(std::string_view name);

struct Corruption {
  CorruptKind kind = CorruptKind::kBitflip;
  // bitflip, drop: this message. swap: this message and the next one on the same rank pair
  // (both posted in one unit by the sender) carry each other's payload.
  MessageId message;
  int64_t element = 0;  // bitflip: which element, and which bit (0 = least significant)
  int bit = 0;
  friend bool operator==(const Corruption&, const Corruption&) = default;
};

struct Kill {
  int rank = 0;
  int64_t action = 0;  // the rank stops dead just before this action (run-wide counter)
  friend bool operator==(const Kill&, const Kill&) = default;
};

// The run a plan was drawn for, when it was drawn for one; replaying it elsewhere is refused.
struct PlanTarget {
  std::string schedule;  // e.g. "dualpipe, 8 ranks, 16 stages, 20 microbatches"
  std::vector<int64_t> comms;     // per rank: communication ops in the run
  std::vector<int64_t> computes;  // per rank
  std::vector<int64_t> units;     // per rank
  friend bool operator==(const PlanTarget&, const PlanTarget&) = default;
};

struct FaultPlan {
  uint64_t seed = 0;
  std::string drawn_with;  // how it was drawn, for people ("delay exponential:100us at ...")
  std::vector<RankFaults> ranks;  // may be shorter than the run's ranks (the rest: no faults)
  bool poison = false;
  std::optional<Corruption> corrupt;
  std::optional<Kill> kill;
  std::optional<PlanTarget> target;

  // The faults of `rank` (an empty RankFaults past the end).
  const RankFaults& Rank(int rank) const;
  bool HasNegativeControl() const { return corrupt.has_value() || kill.has_value(); }
  bool Empty() const;  // no fault at all
  // One line per kind of fault present ("delays: 1532 of 2960 sites, mean 98us, max 1.4ms").
  std::string Summary() const;
  // A description of the negative control ("bitflip of message #5 from rank 2 to rank 3, ...").
  std::string DescribeNegativeControl() const;

  std::string Json() const;
  friend bool operator==(const FaultPlan&, const FaultPlan&) = default;
};

// Reads a plan. Throws InputError ("name: error: ranks[2].post_delay_us[5]: ...") on anything
// malformed; never crashes on any input.
FaultPlan ParseFaultPlan(std::string_view text, std::string_view name);
FaultPlan ReadFaultPlan(const std::string& path);

}  // namespace pipeproof
