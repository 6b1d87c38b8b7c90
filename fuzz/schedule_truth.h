// The one ground truth of every test that judges schedules (verify/'s unit tests and the
// property suites): whether a schedule is sound, decided here from docs/design.md's definitions
// without any of verify/'s checking code (no event graph, no Z3). The deadlock question is
// answered by running the program step by step under the communication model, with every compute
// and SEND checking on the spot that what it needs is there.
//
// It is deliberately simple and slow: the verifier is the fast one, and the tests check that the
// two agree on every schedule they draw.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "schedule/schedule.h"
#include "verify/verify.h"  // CommModel only

namespace pipeproof {
// How RapidCheck prints a communication model in a counterexample (found by lookup).
inline void showValue(CommModel model, std::ostream& os) { os << CommModelName(model); }
inline void showValue(StreamLayout layout, std::ostream& os) { os << StreamLayoutName(layout); }
}  // namespace pipeproof

namespace pipeproof::truth {

struct Verdict {
  // Each false names a rule the schedule breaks. When `structure` is false the others are not
  // decided (left true): their questions need a well-formed schedule.
  bool structure = true;  // counts, ranges, placement, every SEND/RECV has a peer on another rank,
                          // PyTorch's runtime actions in their order
  // Read from the program text: every input is made, sent and received (and, on a rank with
  // WAITs, waited for) before the compute that uses it; every SEND after what it names.
  bool dependencies = true;
  bool matching = true;   // the k-th SEND p->q and the k-th RECV on q from p name the same payload
  // Seen while running: every compute and SEND that ran found what it needs. Where a rank hangs,
  // what it never reached is not judged, which is why `dependencies` is asked apart.
  bool inputs = true;
  bool runs_to_end = true;  // no deadlock: every action ran and every op completed
  bool memory = true;     // peak live activations within the bound of schedule.kind

  bool sound() const {
    return structure && dependencies && matching && inputs && runs_to_end && memory;
  }
  std::string Describe() const;  // "sound", or the broken rules: "matching, runs_to_end"
  // The verifier's checks that must fail, in report order ("structure" alone hides the rest):
  // structure, dependencies, matching, deadlock (runs_to_end), memory.
  std::vector<std::string> FailingChecks() const;
};

Verdict Judge(const Schedule& schedule, CommModel model,
              StreamLayout layout = StreamLayout::kRank);

// The pieces, for tests that want one question only.
bool StructureHolds(const Schedule& schedule);
bool MessagesMatch(const Schedule& schedule);     // needs StructureHolds
bool DependenciesHold(const Schedule& schedule);  // needs StructureHolds
// Runs the program under `model` and `layout`; `inputs` and `runs_to_end` of the result are set.
Verdict Run(const Schedule& schedule, CommModel model,
            StreamLayout layout = StreamLayout::kRank);  // needs StructureHolds
// Per rank, the most activations held at once (+1 at F, -1 at B or I; an OVERLAP_F_B's forward
// counts before its backward): the largest over ranks. And the bound the generator
// `schedule.kind` promises (-1: none).
int PeakActivations(const Schedule& schedule);
int KindBound(const Schedule& schedule);

}  // namespace pipeproof::truth
