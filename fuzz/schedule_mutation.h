// The one library of schedule mutations, shared by verify/'s unit tests and the property suites:
// the classes of mistake the verifier issue lists (drop or duplicate an action, swap two actions,
// change a microbatch id in a SEND or RECV, move a SEND or RECV across a WAIT, move a WAIT) and a
// few more that people make by hand. Each is written here, apart from verify/'s code, and is
// judged by fuzz/schedule_truth.h.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "schedule/schedule.h"

namespace pipeproof {

enum class MutationClass {
  kDropCompute,       // remove one F/B/I/W/OVERLAP_F_B
  kDropComm,          // remove one SEND/RECV
  kDropWait,          // remove one WAIT
  kDuplicateCompute,  // write one compute twice
  kDuplicateComm,     // write one SEND/RECV twice
  kSwapAdjacent,      // exchange two neighbouring actions of a rank
  kSwapAny,           // exchange two actions of a rank
  kSendMicrobatch,    // a SEND names another microbatch
  kRecvMicrobatch,    // a RECV names another microbatch
  kCommAcrossWait,    // a SEND/RECV moves to the other side of its nearest WAIT
  kMoveWait,          // a WAIT moves elsewhere in its rank's program
  kReverseGroup,      // the SEND/RECVs between two WAITs are written in reverse order
  kSwapSendRecv,      // a SEND and the nearest RECV after it on its rank trade places
  kWrongRank,         // an action moves to another rank
  kIWithoutW,         // a B becomes an I whose W never comes, or a W is dropped
  kStripWaits,        // one rank loses every WAIT
  kStripAllWaits,     // every rank loses every WAIT
  kShuffleRank,       // one rank's program in random order
  // PyTorch's WAIT_SEND (they apply to schedules that have some: see AddPyTorchWaitSends):
  kDropWaitSend,        // remove one WAIT_SEND (one wait less never hangs a rank)
  kDuplicateWaitSend,   // write one WAIT_SEND twice
  kWaitSendBeforeSend,  // a WAIT_SEND moves before the first SEND of its kind on its rank
  kWaitSendAfterSend,   // a WAIT_SEND moves to just after the SEND it waits for
  kWaitSendInGroup,     // a SEND of a rank with WAITs is waited for before the WAIT that posts it
};

const std::vector<MutationClass>& AllMutationClasses();
std::string MutationClassName(MutationClass c);  // "drop-compute", ...
// How RapidCheck prints a class in a counterexample (found by lookup).
inline void showValue(MutationClass c, std::ostream& os) { os << MutationClassName(c); }

// Applies one mutation of class `c` to `s` at a place drawn from `seed` (a seed rather than a
// generator, so that a RapidCheck counterexample replays from the value it printed). Returns a description
// ("rank 2: dropped [7] 3B1") or "" when the class has nowhere to apply on this schedule (no
// WAIT to drop, say); `s` is then unchanged.
std::string Mutate(Schedule& s, MutationClass c, uint64_t seed);

// The check the verifier must fail for every mutant of a class that always breaks the same rule
// (dropping a compute always breaks the counts of `structure`), or "" for classes whose effect
// depends on where they land.
std::string AlwaysFailingCheck(MutationClass c);

// The classes that only apply to a schedule with WAIT_SENDs.
bool NeedsWaitSends(MutationClass c);

// PyTorch's own WAIT_SEND placement (torch.distributed.pipelining's _add_wait_send), written
// here from its source apart from pipeproof's: on every rank without WAIT or WAIT_SEND, a
// SEND_F is waited for right after the backward (B or I, alone or in an OVERLAP_F_B) of its
// stage and microbatch that follows it on the rank, which proves the peer took the activation;
// every other SEND at the end of the program, in the order the SENDs stand. Returns how many
// WAIT_SENDs it wrote.
int AddPyTorchWaitSends(Schedule& s);

}  // namespace pipeproof
