// What each rank will do, worked out before anything runs: the passes of a run, and per rank and
// pass its communication units, the message each SEND/RECV carries, and the counters by which
// fault plans name places (the k-th communication op, compute, unit, action of a rank; the k-th
// message from one rank to another). The executor follows it, the fault-plan drawer draws over
// it, and the flight recorder names actions through it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "schedule/schedule.h"

namespace pipeproof {

// A run has two passes over the same weights: the training step, then the forward-only step
// whose last-stage outputs are compared (the DualPipe example's inference check).
enum class PassKind { kTrain, kInference };
std::string_view PassName(PassKind kind);  // "train", "inference"

// The forward-only projection of a schedule: its F tasks (an OVERLAP_F_B keeps its F), their
// SEND_F/RECV_F and WAIT_SEND_F, and the WAITs whose group still holds something. Deadlock-free
// under `nccl` (any stream layout) whenever the schedule is: every timing of the full step is one
// of the projection's.
Schedule ForwardOnly(const Schedule& schedule);

// One SEND or RECV of a rank.
struct PlannedComm {
  int action = 0;           // index in the rank's program
  bool send = false;
  int peer = 0;
  Payload payload;
  int64_t channel_seq = 0;  // its place among this pass's messages from sender to receiver
};

// A communication unit: a WAIT's group, or a lone SEND/RECV on a rank without WAITs. A lone unit
// runs on one of the rank's communication streams (one per rank, per peer or per peer and
// direction: the run's StreamLayout), in program order within that stream.
struct PlannedUnit {
  std::vector<int> comms;  // indices into RankPlan::comms, in program order
  int posted_at = 0;       // the action that posts it: the WAIT, or the lone SEND/RECV itself
  int stream = -1;         // a lone unit: its stream (StreamOf); a WAIT group: -1
  int stream_seq = 0;      // a lone unit: its place among its stream's units in the pass
};

struct RankPlan {
  int rank = 0;
  bool grouped = false;  // the rank's program has WAITs: its SEND/RECVs form groups
  std::vector<PlannedComm> comms;
  std::vector<PlannedUnit> units;
  std::vector<int> comm_of_action;     // action -> index into comms, or -1
  std::vector<int> unit_of_action;     // SEND/RECV: its unit; WAIT: the unit it posts; else -1
  std::vector<int> compute_of_action;  // compute action -> its index among computes, or -1
  // WAIT_SEND action -> the unit of the SEND it waits for (the last one of its stage, microbatch
  // and direction before it), or -1.
  std::vector<int> waited_unit_of_action;
  // SEND comm -> the WAIT_SEND action that retires its payload (PyTorch frees a send's buffer when
  // its wait returns), or -1: the payload lives until the unit completes. Ranks without WAITs only.
  std::vector<int> retired_by;
  int computes = 0;
  std::vector<int> unposted;  // SEND/RECVs after a grouped rank's last WAIT: never posted
};

RankPlan PlanRank(const Schedule& schedule, const RouteIndex& routes, int rank,
                  StreamLayout streams = StreamLayout::kRank);

// Where a pass's counters start on a rank: the passes of a run count on from one another, as a
// tool watching a process's calls would (the k-th send of the whole run, not of a pass).
struct PassBase {
  int64_t action = 0;
  int64_t comm = 0;
  int64_t compute = 0;
  int64_t unit = 0;
  std::vector<int64_t> sent;      // peer -> messages sent to it before this pass
  std::vector<int64_t> received;  // peer -> messages received from it before this pass
};

struct PassPlan {
  PassKind kind = PassKind::kTrain;
  Schedule schedule;
  std::vector<RankPlan> ranks;
  std::vector<PassBase> base;  // per rank
};

struct RunPlan {
  std::vector<PassPlan> passes;  // train, then inference
  int ranks = 0;
  StreamLayout streams = StreamLayout::kRank;
  // Pair layout: per rank, the peers it meets for the first time, unit by unit in program order
  // (the train pass meets every peer the run does). Each entry is one set-up of the pairs'
  // communicators, which holds the rank until each of those peers has come to its own first
  // contact with it; the rank's host reaches its first contacts ahead of its computes.
  std::vector<std::vector<std::vector<int>>> first_contacts;

  // Totals over all passes, per rank: the lengths of a fault plan's per-rank arrays.
  int64_t Actions(int rank) const;
  int64_t Comms(int rank) const;
  int64_t Computes(int rank) const;
  int64_t Units(int rank) const;
  // "train [12] 3SEND_F4" for a rank's action by its run-wide index.
  std::string NameAction(int rank, int64_t action) const;
};

// `schedule` must have SEND/RECV (lower a compute-only one first) and should have passed
// verification; PlanRun itself only needs its structure to be sound.
RunPlan PlanRun(const Schedule& schedule, StreamLayout streams = StreamLayout::kRank);

}  // namespace pipeproof
