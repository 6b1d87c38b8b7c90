// Repair (docs/design.md, "Repair"): the fewest edits of a schedule's communication that make it
// sound under a communication model and stream layout. Every rank's compute order stays exactly
// as written; only SEND/RECV positions, WAIT group boundaries and WAIT_SENDs move, and a missing
// SEND or RECV is added or an orphan dropped.
//
// How: stray and duplicate ops are dropped and missing ones added where their payload is made or
// needed; each rank pair's SENDs and RECVs are put in one FIFO order (the longest common
// subsequence stays, the rest moves into the nearest place that keeps dependencies); then, while
// the event simulation finds a deadlock, the one edit around the cycle that lets the execution
// run furthest is applied. Re-lowering the compute order (Lower) is always a candidate too: the
// repair with fewer edits wins, so the count never exceeds what re-lowering would change.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "schedule/schedule.h"
#include "verify/verify.h"

namespace pipeproof {

// One change to a rank's communication. Positions are indices in the rank's program.
struct RepairEdit {
  enum class Kind : uint8_t { kMove, kAdd, kRemove };
  Kind kind = Kind::kMove;
  int rank = 0;
  std::string action;  // as written: "1SEND_F3", "WAIT", "2WAIT_SEND_F0"
  int from = -1;       // in the original program (move, remove)
  int to = -1;         // in the repaired program (move, add)
  std::string reason;  // the verifier's finding it answers: the cycle, mix-up or missing message
};
std::string_view RepairEditKindName(RepairEdit::Kind kind);  // "move", "add", "remove"
// "rank 1: move 1RECV_F0 from [4] to [2]".
std::string Describe(const RepairEdit& edit);

// The edits that turn `original` into `repaired`, two schedules with the same computes (and
// data-parallel actions) in the same order on every rank; InputError otherwise. Between two
// computes, what the longest common subsequence of the two gaps leaves out is removed or added;
// an op removed in one place and added in another of its rank is one move.
std::vector<RepairEdit> CommunicationDiff(const Schedule& original, const Schedule& repaired);

struct RepairResult {
  enum class Outcome : uint8_t {
    kAlreadySound,     // nothing to do
    kRepaired,         // `schedule` is sound; `edits` made it so
    kComputeCannotRun  // the compute order itself cannot run (or its computes are malformed)
  };
  Outcome outcome = Outcome::kAlreadySound;
  Schedule schedule;               // the repaired schedule (the input when nothing was done)
  std::vector<RepairEdit> edits;   // what changed, in rank and position order
  // "local" (edits found one finding at a time) or "re-lowered" (the compute order lowered
  // again, where that changes less); empty when nothing was done.
  std::string method;
  int relowered_edits = -1;  // what re-lowering would change; -1 where it cannot run
  std::string local_note;    // why the local search gave way to re-lowering, if it did
  std::string problem;       // kComputeCannotRun: which rank waits for what
  VerifyReport before;       // the input's verdict
  VerifyReport after;        // the repaired schedule's (the input's when nothing was done)

  std::string Text() const;
  std::string Json() const;  // {"outcome", "edits": [...], "before": {...}, "after": {...}, ...}
};
std::string_view RepairOutcomeName(RepairResult::Outcome outcome);  // "already-sound", ...

// Repairs `schedule` under options.model and options.streams; the other options (the proof, the
// memory bound) are those of the verdicts before and after. Throws InputError for bad options.
RepairResult Repair(const Schedule& schedule, const VerifyOptions& options);

// Whether the checks repair answers for (structure, dependencies, matching, deadlock) pass.
bool RepairSound(const VerifyReport& report);

}  // namespace pipeproof
