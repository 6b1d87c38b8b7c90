// Test helpers for verify/: schedules from text, mutations, and a ground truth for every check
// computed here from DESIGN.md's definitions, independently of the code under test (no event
// graph, no Z3: the deadlock truth is a step-by-step run of the program under the model).
#pragma once

#include <random>
#include <string>
#include <vector>

#include "schedule/schedule.h"
#include "verify/verify.h"

namespace pipeproof::testing {

// A .pps text (header + "rank r:" lines) as a schedule.
Schedule Pps(const std::string& text);
Schedule Generated(const std::string& kind, int ranks, int microbatches, bool overlap = true);

// The check names in report order.
const std::vector<std::string>& CheckNames();
// The names of the checks that failed, in order.
std::vector<std::string> FailedChecks(const VerifyReport& report);

// ---- ground truth
// Ranges, placement and counts (a data-parallel action: its stage's range and rank). The order
// rules of PyTorch's runtime actions are not repeated here: structure_test.cpp tests each.
bool TruthStructure(const Schedule& s);
bool TruthDependencies(const Schedule& s);
bool TruthMatching(const Schedule& s);
// Runs the program step by step under the model and, for nccl, the stream layout (with the pair
// layout's set-up at first contacts); true when every action completes. A WAIT_SEND holds its
// rank until its SEND has completed; data-parallel actions are passed over.
bool TruthRunsToEnd(const Schedule& s, CommModel model, StreamLayout streams = StreamLayout::kRank);
int TruthPeakActivations(const Schedule& s);  // the largest peak over ranks
int TruthKindBound(const Schedule& s);        // -1 for no bound
// The failing checks as the definitions say (structure failing hides the rest).
std::vector<std::string> TruthFailedChecks(const Schedule& s, CommModel model,
                                           StreamLayout streams = StreamLayout::kRank);

// ---- mutations: each returns false when it does not apply to the drawn place
enum class Mutation {
  kDropCompute,
  kDropComm,
  kDropWait,
  kDuplicateCompute,
  kDuplicateComm,
  kSwapAdjacent,
  kSwapAny,
  kSendMicrobatch,
  kRecvMicrobatch,
  kCommAcrossWait,
  kMoveWait,
  kSwapSendRecv,
  kWrongRank,
  kIWithoutW,
  kStripWaits,     // one rank's
  kStripAllWaits,  // every rank's
  kShuffleRank,    // one rank's whole program in random order
};
const std::vector<Mutation>& AllMutations();
std::string MutationName(Mutation m);
bool Mutate(Schedule& s, Mutation m, std::mt19937& rng);

}  // namespace pipeproof::testing
