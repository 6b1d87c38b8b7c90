// Internal to verify/: the checks one by one, and the pieces they share.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <utility>
#include <optional>
#include <string>
#include <vector>

#include "verify/verify.h"

namespace pipeproof::verify_internal {

// Below this many actions a check takes well under a millisecond: not worth a thread's start.
inline constexpr int64_t kActionsWorthAThread = 20000;

// Problems a check found: all counted, the first few kept as lines for the report.
class Findings {
 public:
  static constexpr int kKept = 12;
  void Add(std::string line);
  int count() const { return count_; }
  bool empty() const { return count_ == 0; }
  // A pass result with `pass_message`, or a failure whose message leads with `what`.
  CheckResult Result(std::string name, const std::string& pass_message,
                     const std::string& what) const;

 private:
  int count_ = 0;
  std::vector<std::string> lines_;
};

// "rank 1 [4] 1SEND_F3": an action and where it stands.
std::string Where(const Schedule& s, int rank, int index);

CheckResult Skipped(std::string name, const std::string& why);

// ---- structure (structure.cpp)
CheckResult CheckStructure(const Schedule& schedule);

// ---- matching (matching.cpp)
struct Endpoint {
  int32_t rank = -1;
  int32_t index = -1;
  bool valid() const { return rank >= 0; }
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

// What every SEND/RECV names and whom it meets. Meaningful for a schedule that passed structure;
// MatchMessages itself must stay safe on any schedule with a complete topology and a program row
// per rank (Verify runs it beside the structure check), so every look-up it makes by a stage or
// microbatch an action names is range-checked (MessageOf does).
struct Messages {
  std::vector<std::vector<Payload>> payload;  // [rank][index]; meaningful for SEND/RECV only
  std::vector<std::vector<int32_t>> peer;     // [rank][index]; -1 for computes and WAITs
  // [rank][index]: the FIFO partner, the k-th RECV for the k-th SEND and back; invalid when
  // the op is left over.
  std::vector<std::vector<Endpoint>> partner;
};
Messages MatchMessages(const Schedule& schedule, const RouteIndex& routes);
CheckResult CheckMatching(const Schedule& schedule, const Messages& messages);

// The payload a SEND names, seen from the receiving side, and a RECV's: both name the stage it
// goes into. PayloadSlot numbers payloads densely: 2 x stages x microbatches slots.
int64_t PayloadSlot(const Schedule& s, const Payload& p);
int64_t PayloadSlots(const Schedule& s);

// Per rank, the RECVs that may carry a payload: those naming it and those whose partner SEND
// names it (a mix-up is matching's to report; dependencies accepts either reading).
class ReceiveIndex {
 public:
  ReceiveIndex(const Schedule& s, const Messages& messages);
  // Calls f(index) for each RECV on the payload's receiving rank that may carry it.
  template <typename F>
  void ForEach(const Payload& p, F&& f) const {
    for (int32_t e = head_[PayloadSlot(s_, p)]; e >= 0; e = entries_[e].next) f(entries_[e].index);
  }

 private:
  struct Entry {
    int32_t index;
    int32_t next;
  };
  void Add(const Payload& p, int32_t index);
  const Schedule& s_;
  std::vector<int32_t> head_;
  std::vector<Entry> entries_;
};

// The payload a compute needs from the stage that makes `need`, when that stage is elsewhere.
Payload NeededPayload(const PassKey& need, const Task& consumer);
// The pass whose result a SEND's payload is.
PassKey SentPass(const Payload& p);

// ---- dependencies (dependencies.cpp)
// Per (pass, stage, microbatch): the position of the compute making it on its placed rank.
class PassTable {
 public:
  explicit PassTable(const Schedule& s);
  int Producer(const PassKey& key) const;  // -1 when no compute on the stage's rank makes it

 private:
  const Schedule& s_;
  std::vector<int32_t> index_;
};
// `local_only`: check only inputs made on the same rank (a compute-only schedule whose
// messages are not placed).
CheckResult CheckDependencies(const Schedule& schedule, const RouteIndex& routes,
                              const Messages& messages, bool local_only = false);
// The same with a receive index the caller built, which the simulation can then share.
CheckResult CheckDependencies(const Schedule& schedule, const RouteIndex& routes,
                              const Messages& messages, const ReceiveIndex& receives,
                              bool local_only = false);
// Without WAIT groups a compute at `index` waits for these RECVs: written before it, each the
// RECV named for one of its remote inputs (what PyTorch's runtime waits for; under a FIFO mix-up
// its partner may carry something else, which matching reports).
// Into `out` (cleared first), so that a caller walking every compute reuses one buffer.
void InputReceives(const Schedule& s, const RouteIndex& routes, const ReceiveIndex& receives, int rank,
                   int index, std::vector<int32_t>& out);
bool UsesWaitGroups(const std::vector<Action>& program);

// Per rank and WAIT_SEND: the position of the SEND it waits for (the last one of that stage,
// microbatch and direction before it), -1 when there is none or for other actions. Empty rows
// for ranks without WAIT_SEND.
std::vector<std::vector<int32_t>> WaitedSends(const Schedule& s);

// ---- the event simulation (simulate.cpp)

// The simulated timing of a complete execution as the place of every event in it (0, 1, ...): the
// certificate that deadlock_z3.cpp checks against its own encoding.
struct EventOrder {
  std::vector<std::vector<int32_t>> at;   // [rank][action]: a compute's run, a unit's start (at its anchor)
  std::vector<std::vector<int32_t>> end;  // [rank][anchor]: a unit's completion
  std::map<std::pair<int, int>, int32_t> reached;  // (rank, anchor): the host reaching a first contact (pair)
  std::map<std::pair<int, int>, int32_t> setup;    // (low rank, high rank): a pair's set-up (pair)
};

struct SimulationResult {
  Timeline timeline;
  EventOrder order;  // with record_order, when the execution is complete
  std::vector<CycleStep> cycle;         // minimal, when the execution deadlocks
  std::vector<std::string> stuck_grid;  // grid lines around the stuck point
  // The cycle passes through the set-up of a lazily created pair communicator (--streams pair):
  // the ranks deadlock before any data moves.
  bool setup_deadlock = false;
};
SimulationResult RunSimulation(const Schedule& schedule, const RouteIndex& routes,
                               const Messages& messages, CommModel model, const Costs& costs,
                               StreamLayout streams = StreamLayout::kRank, bool record_order = false);
// The same with a receive index the caller built (the one the dependencies check used: building
// it is a pass over every action and a fresh array, worth doing once). `beside`, where given, runs
// on the second core while the graph runs, once its build has had both cores: Verify's
// dependencies check.
SimulationResult RunSimulation(const Schedule& schedule, const RouteIndex& routes,
                               const Messages& messages, const ReceiveIndex& receives,
                               CommModel model, const Costs& costs,
                               StreamLayout streams = StreamLayout::kRank, bool record_order = false,
                               const std::function<void()>& beside = {});

// Whether the execution runs to its end, and no more (no timing, no cycle): what the report asks
// of the other stream layouts and of the eager model.
bool RunsToEnd(const Schedule& schedule, const RouteIndex& routes, const Messages& messages,
               const ReceiveIndex& receives, CommModel model, StreamLayout streams);

// ---- the proof of the deadlock verdict (deadlock_z3.cpp), on an encoding built apart from the
// simulation. By default the simulation's verdict is certified: a complete execution by checking
// its timing against every constraint (no solver needed), a deadlock by Z3 on the constraints of
// its cycle alone. `search`: Z3 decides on all the constraints (what the property tests compare
// with the simulation).
struct ProofRequest {
  bool search = false;
  double timeout_s = VerifyOptions{}.z3_timeout_s;  // Z3's caps; past them the proof is skipped
  int64_t memory_mb = VerifyOptions{}.z3_memory_mb;
  ProgressCallback progress;
};
struct Proof {
  // As the report carries it: outcome (deadlock-free, deadlock, skipped past a cap, no-z3 where
  // Z3 was needed), method ("certificate", "cycle": Z3 on the cycle's constraints, or "search"),
  // note (why skipped, or what refused the certificate) and the figures.
  ProofVerdict verdict;
  bool refused = false;  // the simulated timing breaks a constraint (verdict.note): the simulation is wrong
  std::vector<CycleStep> cycle;  // from Z3's unsat core
};
Proof ProveDeadlockVerdict(const Schedule& schedule, const RouteIndex& routes, const Messages& messages,
                           CommModel model, StreamLayout streams, const SimulationResult& sim,
                           const ProofRequest& request);
// The certificate check alone, on any order (the negative control hands it a corrupted one): ""
// when the order satisfies every constraint, else why not.
std::string CheckCertificate(const Schedule& schedule, const RouteIndex& routes, const Messages& messages,
                             CommModel model, StreamLayout streams, const EventOrder& order);
bool Z3Built();

// ---- memory (memory.cpp)
MemoryReport MeasureMemory(const Schedule& schedule);
CheckResult CheckMemory(const Schedule& schedule, const MemoryReport& report);

// ---- timing (report.cpp)
CheckResult TimingCheck(const Timeline& timeline, const Costs& costs, CommModel model,
                        StreamLayout streams, bool default_costs);

// ---- text pieces (report.cpp)
// One line per step: "rank 1 [4] 1RECV_F1 waits for ...".
std::vector<std::string> CycleLines(const std::vector<CycleStep>& cycle);
// Grid lines (steps x the named ranks) around the marked positions.
std::vector<std::string> GridAround(const Schedule& s, const std::vector<Endpoint>& marked);

}  // namespace pipeproof::verify_internal
