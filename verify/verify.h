// The verifier: proves a schedule sound, or shows exactly where it is not (docs/design.md,
// "Verification"). Verify() runs six checks, in this order, each reported by name:
//
//   structure     shape, counts and placement: every action's stage and microbatch in range and
//                 on the microbatch's route, every action on the rank its stage is placed on,
//                 every SEND/RECV with a neighbour on another rank to talk to, and per (stage,
//                 microbatch) exactly one F and either exactly one B or exactly one I and one W.
//   dependencies  every compute's inputs reach it in time. A local input (same rank) is computed
//                 earlier in program order. A remote input travels by a message (the k-th SEND
//                 from p to q meets the k-th RECV on q from p) whose SEND or RECV names it, that is
//                 sent after the input is computed and has completed when the compute runs: a WAIT
//                 lies between the RECV and the compute on a rank with WAIT groups; without WAITs
//                 the compute waits for the RECVs written before it that bring its input. Every
//                 SEND comes after the compute that makes what it names (it reads that buffer).
//   matching      per ordered rank pair, the k-th SEND and the k-th RECV name the same payload and
//                 none is left over. Where they disagree the message is a silent mix-up (NCCL has
//                 no tags): the report says which send met which receive and what each carried.
//   deadlock      the execution can run to its end under the communication model. Decided by an
//                 event simulation and proven independently by Z3; the two must agree. On a
//                 deadlock: the minimal cycle of blocked actions, what each waits for, and the grid
//                 around the stuck point.
//   memory        live activations per rank in stage-chunks (+1 at a forward, -1 at its B or I),
//                 peak and where it is reached, against a bound (VerifyOptions::max_activations,
//                 else the bound of the generator named by schedule.kind, see ActivationBound).
//                 The weight-gradient stash between I and W is reported separately, unbounded.
//   timing        the timed simulation: makespan, busy time and bubble per rank.
//
// The checks are independent questions, so a broken schedule may fail several: a dropped RECV
// fails dependencies (its consumer's input never arrives) and matching (a SEND is left over), and
// deadlock too under nccl (the leftover send never completes); a mislabelled SEND/RECV fails
// matching only as long as either label's payload would arrive in time.
//
// When structure fails the later checks are skipped: their questions are not defined for a
// schedule whose actions are out of range or missing. The others run whatever failed before them,
// so a report names every problem it can; the first failing check is the primary finding. Timing
// is skipped when the execution deadlocks. A skipped check is reported with status "skipped"
// (JSON: "ok": true, "skipped": true): it did not fail, it was not asked.
//
// A compute-only schedule (no SEND/RECV/WAIT) is lowered with Lower() first and the lowered
// schedule is verified; the report says so.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "schedule/kinds.h"
#include "schedule/schedule.h"

namespace pipeproof {

// How SEND/RECV behave (docs/design.md, "Communication semantics").
//  kNccl: a rank's communication streams (one per rank, per rank pair or per directed edge: the
//         StreamLayout of schedule.h) each run their units (a WAIT group, or a lone SEND/RECV on a
//         rank without WAITs) strictly in program order; a unit starts only after every compute
//         written before it has finished; a send and its receive complete together, only while
//         both of their units run (rendezvous); ops in one group progress independently. Under
//         the pair layout the first unit between two ranks also sets up their communicator,
//         which blocks each rank until the other reaches its own first op with it.
//  kEager: a send completes when posted, a receive once its send has been posted; units never
//         hold each other up (PyTorch's dry-run simulator; MPI with small messages).
// Both models, per rank: a rank whose program holds a WAIT posts the SEND/RECVs written since its
// previous WAIT as one group at each WAIT and blocks there until the group completes; a WAIT with
// nothing pending is no action; SEND/RECVs after the rank's last WAIT are never posted, so they
// never complete (a deadlock; a compute reading one also fails dependencies). A rank without
// WAITs posts each SEND/RECV where it stands, a compute waits only for the receives that bring
// its inputs, and everything must complete by the end. An op whose FIFO partner is missing never
// completes (nccl: any op; eager: a receive). Ranks may mix the two styles. A WAIT_SEND (PyTorch's
// runtime) blocks its rank until that SEND has completed. Data-parallel actions (UNSHARD,
// REDUCE_GRAD, ...) use another communicator and hold no pipeline stream: they take no time.
enum class CommModel { kNccl, kEager };
std::optional<CommModel> CommModelFromName(std::string_view name);  // "nccl", "eager"
std::string_view CommModelName(CommModel model);
// "the nccl model with one stream per rank (--streams rank)", "the eager model".
std::string DescribeSemantics(CommModel model, StreamLayout streams);

// Per-action costs of the timing simulation, in any unit of time. The defaults are the DualPipe
// paper's running example: a forward chunk costs 1, a full backward 2, split evenly into an
// input-gradient part I = B - W = 1 and a weight-gradient part W = 1; an overlapped
// forward-and-backward unit (OVERLAP_F_B, whatever its backward part) costs 3 = F + B; messages
// take no time. SEND/RECV/WAIT cost nothing beyond `latency` per message.
struct Costs {
  double forward = 1;      // F
  double backward = 2;     // B
  double input_grad = 1;   // I
  double weight_grad = 1;  // W
  double overlap_fb = 3;   // (F;B)OVERLAP_F_B
  double latency = 0;      // per message, from the later of its two ends being ready
};
// Parses "F=1,B=2,I=1,W=1,FB=3,L=0" (any subset, any order; L is the latency). Costs left out
// keep base's values, except that I defaults to B - W when B or W is given, and FB to F + B when
// F or B is given. Throws InputError naming the bad item.
Costs ParseCosts(std::string_view text, Costs base = {});
std::string ToString(const Costs& costs);  // "F=1 B=2 I=1 W=1 FB=3 latency=0"
// What one compute action of kind `op` costs (0 for SEND/RECV/WAIT).
double CostOf(Op op, const Costs& costs);

// Reports how long work is going, for a progress line (render/progress.h): `phase` ("memory",
// "deadlock: Z3 solving"), `done` of `total` steps (total 0: unknown). Must return quickly.
using ProgressCallback = std::function<void(std::string_view phase, int64_t done, int64_t total)>;

struct VerifyOptions {
  CommModel model = CommModel::kNccl;
  StreamLayout streams = StreamLayout::kRank;  // nccl: which stream carries each SEND/RECV
  bool use_z3 = true;                  // prove the deadlock verdict (--z3 off / --no-z3: false)
  // The proof: certify the simulation's verdict (a complete execution: its timing checked against
  // every constraint of an encoding built apart; a deadlock: Z3 on its cycle's constraints), or
  // with z3_search Z3 decides on all of them (--z3 search). Z3's caps: past them the proof is
  // skipped, saying why, and the verdict stands on the simulation.
  bool z3_search = false;
  double z3_timeout_s = 60;
  int64_t z3_memory_mb = 4096;
  std::optional<int> max_activations;  // memory bound in stage-chunks; default: the kind's bound
  std::optional<Costs> costs;          // timing costs; default: Costs{}
  ProgressCallback progress;           // may be empty
};

enum class CheckStatus { kPass, kFail, kSkipped };

// What Z3 made of the deadlock question, so that callers need not read it out of the text.
struct ProofVerdict {
  enum class Outcome {
    kNotAsked,      // VerifyOptions::use_z3 was false (--no-z3)
    kNoZ3,          // asked, but this build has no Z3 and the proof needed it
    kDeadlockFree,  // the timing constraints are satisfiable: a complete execution exists
    kDeadlock,      // they are unsatisfiable: no execution runs to its end
    kSkipped,       // a cap of Z3's was reached (`note` says which): the simulation decides
  };
  Outcome outcome = Outcome::kNotAsked;
  // False only on a pipeproof bug: the check then fails whatever the proof said, and says so.
  bool agrees_with_simulation = true;
  // "certificate" (the simulated timing satisfies every constraint), "cycle" (Z3: the cycle's
  // constraints are unsatisfiable) or "search" (Z3 on all of them).
  std::string method;
  std::string note;  // why it was skipped, or what refused the certificate
  // Set when proven.
  double seconds = 0;
  int variables = 0;
  int constraints = 0;
  int proved_constraints = 0;  // the constraints the proof looked at (a cycle's: a few)
  bool proven() const { return outcome == Outcome::kDeadlockFree || outcome == Outcome::kDeadlock; }
};
std::string_view ProofOutcomeName(ProofVerdict::Outcome outcome);  // "deadlock-free", "no-z3", ...

struct CheckResult {
  std::string name;  // structure, dependencies, matching, deadlock, memory, timing
  CheckStatus status = CheckStatus::kPass;
  std::string message;               // one line
  std::vector<std::string> details;  // further lines for the text report
  // deadlock, wherever the event simulation decided it: Z3's part of the verdict.
  std::optional<ProofVerdict> proof;
  bool ok() const { return status != CheckStatus::kFail; }
  bool skipped() const { return status == CheckStatus::kSkipped; }
};

// One blocked action of a deadlock; each step waits for the next, the last for the first.
struct CycleStep {
  int rank = 0;
  int index = 0;          // position in the rank's program
  std::string action;     // as written, e.g. "1SEND_F0" or "WAIT"
  std::string waits_for;  // what it waits for and why
};

struct MemoryReport {
  std::vector<int> peak;        // per rank: most stage-chunks of activations held at once
  std::vector<int> peak_index;  // the action where the peak is first reached, -1 if none
  std::vector<int> stash_peak;  // per rank: most weight gradients deferred (I done, W not)
  std::vector<int> stash_peak_index;
  std::optional<int> bound;  // the bound checked against, if any
  std::string bound_source;  // where the bound comes from
};

// The bound on live activations per rank that a generated kind keeps: KindActivationBound
// (schedule/kinds.h), read from the table of kinds.

// The timing simulation: every action's start and end per rank. Computes run for their cost;
// a SEND/RECV runs from its unit's start until the op completes; a WAIT from the posting of its
// group to the group's completion. Actions that never run (a deadlock) have start = end =
// +infinity and `complete` is false.
struct TimedAction {
  int rank = 0;
  int index = 0;
  double start = 0;
  double end = 0;
};
struct Timeline {
  std::vector<std::vector<TimedAction>> ranks;  // ranks[r][i]: action i of rank r
  double makespan = 0;                          // when the last action ends
  std::vector<double> busy;                     // per rank: total compute cost
  std::vector<double> bubble;                   // per rank: makespan - busy
  bool complete = false;                        // every action ran
  double MaxBubble() const;
  double BubbleRatio() const;  // sum of bubbles / (ranks x makespan)
};

struct VerifyReport {
  bool ok = false;
  bool lowered = false;  // the input was compute-only; the checks ran on Lower()'s schedule
  std::string lowering_note;
  CommModel model = CommModel::kNccl;
  StreamLayout streams = StreamLayout::kRank;
  Costs costs;
  // In check order; every check is present.
  std::vector<CheckResult> checks;
  // deadlock: the blocked actions, minimal; empty when there is no deadlock.
  std::vector<CycleStep> cycle;
  // deadlock, nccl model: the verdict under each stream layout that was decided (the chosen one
  // always; all three when it deadlocks; `rank` too when another layout is sound), true for
  // deadlock-free; and whether the deadlock is one of a pair communicator's set-up.
  std::vector<std::pair<StreamLayout, bool>> layout_verdicts;
  bool setup_deadlock = false;
  MemoryReport memory;
  std::optional<Timeline> timeline;  // timing, when the execution completes

  const CheckResult* Find(std::string_view name) const;
  std::string Text() const;
  std::string Json() const;  // {"ok":..., "checks":[{"name","ok","message",...}, ...], ...}
};

// An upper estimate of Verify()'s own peak memory for `schedule` under `options`, in bytes: the
// schedule's graphs, measured at 220 bytes per action for a sound file with the certified proof
// (839 MiB for 3.96M actions, bench/verify_command_bench) and 360 for a deadlocked one (1.33 GiB:
// two simulations at once ask the other layouts and the eager model), and under a Z3 search up
// to its memory cap on top.
// `pipeproof run` counts it before it verifies.
int64_t VerifierMemoryBytes(const Schedule& schedule, const VerifyOptions& options);

VerifyReport Verify(const Schedule& schedule, const VerifyOptions& options);

// The timing simulation alone. A compute-only schedule is lowered first and its timeline
// reports its own actions (the inserted SEND/RECV are left out). Throws InputError when the
// schedule fails the structure check.
Timeline Simulate(const Schedule& schedule, CommModel model, const Costs& costs,
                  StreamLayout streams = StreamLayout::kRank);

// What `pipeproof simulate` prints: the timing check's object alone (the same one Verify's JSON
// holds under "checks") and its text.
std::string TimingJson(const Timeline& timeline, const Costs& costs, CommModel model,
                       StreamLayout streams = StreamLayout::kRank);
std::string TimingText(const Timeline& timeline, const Costs& costs, CommModel model,
                       StreamLayout streams = StreamLayout::kRank);

// Whether this build can prove deadlock verdicts with Z3.
bool HaveZ3();

}  // namespace pipeproof
