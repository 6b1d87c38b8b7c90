// Property suite 2: on random schedules, on random mutations of generated ones and on generated
// ones with PyTorch's WAIT_SENDs, the deadlock verdict of the event simulation equals Z3's, under
// both communication models and all three stream layouts; and both equal the step-by-step run of
// fuzz/schedule_truth.h. Skipped where pipeproof is built without Z3.
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "fuzz/mutant_gen.h"
#include "fuzz/property.h"
#include "fuzz/schedule_gen.h"
#include "fuzz/schedule_mutation.h"
#include "fuzz/schedule_truth.h"
#include "schedule/lower.h"
#include "verify/verify.h"

namespace pipeproof {
namespace {

enum class Z3Says { kDeadlockFree, kDeadlock, kNothing };

Z3Says Z3Verdict(const CheckResult& deadlock) {
  if (!deadlock.proof) return Z3Says::kNothing;
  switch (deadlock.proof->outcome) {
    case ProofVerdict::Outcome::kDeadlockFree: return Z3Says::kDeadlockFree;
    case ProofVerdict::Outcome::kDeadlock: return Z3Says::kDeadlock;
    default: return Z3Says::kNothing;
  }
}

VerifyOptions Options(CommModel model, StreamLayout streams, bool use_z3, bool search = true) {
  VerifyOptions o;
  o.model = model;
  o.streams = streams;
  o.use_z3 = use_z3;
  o.z3_search = search;
  return o;
}

// Verifies `s` once without and once with Z3 and checks that their deadlock verdicts agree with
// each other and with the ground truth's `runs_to_end`. Returns the report without Z3 and a tag.
std::pair<VerifyReport, std::string> Agreement(const Schedule& s, CommModel model,
                                               StreamLayout streams, bool runs_to_end) {
  VerifyReport simulated = Verify(s, Options(model, streams, false));
  const VerifyReport proven = Verify(s, Options(model, streams, true));
  const CheckResult* by_simulation = simulated.Find("deadlock");
  const CheckResult* by_z3 = proven.Find("deadlock");
  RC_ASSERT(by_simulation != nullptr && by_z3 != nullptr);
  RC_ASSERT(!by_simulation->skipped());  // the schedule is well formed
  RC_LOG() << "simulation: " << by_simulation->message << "\nwith Z3: " << by_z3->message << "\n";
  RC_ASSERT(by_z3->proof.has_value() && by_z3->proof->agrees_with_simulation);
  const Z3Says z3 = Z3Verdict(*by_z3);
  RC_ASSERT(z3 != Z3Says::kNothing);
  const bool runs = by_simulation->ok();
  RC_ASSERT((z3 == Z3Says::kDeadlockFree) == runs);
  // The default proof certifies the same verdict.
  const VerifyReport certified = Verify(s, Options(model, streams, true, /*search=*/false));
  const CheckResult* by_certificate = certified.Find("deadlock");
  RC_ASSERT(by_certificate->proof.has_value() && by_certificate->proof->agrees_with_simulation);
  RC_ASSERT(Z3Verdict(*by_certificate) == z3);
  RC_ASSERT(by_certificate->proof->method == (runs ? "certificate" : "cycle"));
  RC_ASSERT(runs_to_end == runs);
  const bool setup = proven.setup_deadlock;
  RC_ASSERT(simulated.setup_deadlock == setup);
  return {std::move(simulated),
          std::string(CommModelName(model)) + " " + std::string(StreamLayoutName(streams)) +
              (runs ? " deadlock-free" : setup ? " set-up deadlock" : " deadlock")};
}

void CheckAgreement(const Schedule& s, CommModel model, StreamLayout streams) {
  RC_TAG(Agreement(s, model, streams, truth::Run(s, model, streams).runs_to_end).second);
}

PIPEPROOF_PROPERTY_IF(DeadlockProperties, SimulationAndZ3AgreeOnRandomSchedules, HaveZ3(),
                      "built without Z3", ()) {
  const Schedule s = *GenWellFormedSchedule();
  RC_ASSERT(truth::StructureHolds(s));
  CheckAgreement(s, AnyModel(), AnyLayout());
}

// The mutation classes that keep a schedule well formed (the others stop at `structure`, where
// the deadlock question is not asked).
const std::vector<MutationClass>& WellFormedMutations() {
  static const std::vector<MutationClass> classes = {
      MutationClass::kDropComm,       MutationClass::kDropWait,       MutationClass::kDuplicateComm,
      MutationClass::kSwapAdjacent,   MutationClass::kSwapAny,        MutationClass::kSendMicrobatch,
      MutationClass::kRecvMicrobatch, MutationClass::kCommAcrossWait, MutationClass::kMoveWait,
      MutationClass::kReverseGroup,   MutationClass::kSwapSendRecv,   MutationClass::kStripWaits,
      MutationClass::kStripAllWaits,  MutationClass::kShuffleRank};
  return classes;
}

PIPEPROOF_PROPERTY_IF(DeadlockProperties, SimulationAndZ3AgreeOnMutatedGeneratedSchedules, HaveZ3(),
                      "built without Z3", ()) {
  GenerateOptions options = *GenValidOptions(8, 3);
  options.with_comm = true;
  Schedule s = Generate(options);
  const int mutations = *rc::gen::inRange(1, 4);
  for (int k = 0; k < mutations; ++k) {
    const MutationClass c = *rc::gen::elementOf(WellFormedMutations());
    const std::string what = Mutate(s, c, *rc::gen::arbitrary<uint64_t>());
    RC_LOG() << MutationClassName(c) << ": " << (what.empty() ? "(nowhere to apply)" : what) << "\n";
  }
  // One rank, or every WAIT stripped from a schedule of one rank: nothing left to communicate,
  // and a compute-only schedule is lowered instead of checked for deadlock.
  RC_PRE(HasComm(s) && s.ranks > 1);
  CheckAgreement(s, AnyModel(), AnyLayout());
}

// PyTorch's runtime waits for every SEND it posts (torch.distributed.pipelining's
// _add_wait_send). Every generated kind with those WAIT_SENDs added verifies sound under each
// stream layout exactly when the ground truth says so, and the simulation, Z3 (under one layout
// drawn per case, which keeps the suite fast) and the truth agree on its deadlock verdict. Under
// one stream per rank the waits change no verdict: a WAIT_SEND on a rank without WAITs holds back
// only what queues behind its SEND on that stream anyway.
PIPEPROOF_PROPERTY_IF(DeadlockProperties, PyTorchWaitSendsOnEveryGeneratedKind, HaveZ3(),
                      "built without Z3", ()) {
  GenerateOptions options = *GenValidOptions(4, 3);
  options.with_comm = true;
  const Schedule plain = Generate(options);
  RC_PRE(HasComm(plain) && plain.ranks > 1);
  Schedule s = plain;
  const int waits = AddPyTorchWaitSends(s);
  RC_ASSERT(AddWaitSends(plain) == s);  // schedule/'s own, which run --wait-sends uses
  RC_LOG() << options.kind << " " << options.ranks << "x" << options.microbatches << ": " << waits
           << " WAIT_SENDs added\n";
  const StreamLayout proven = AnyLayout();
  std::string verdicts;
  for (StreamLayout streams : kStreamLayouts) {
    const truth::Verdict judged = truth::Judge(s, CommModel::kNccl, streams);
    RC_LOG() << "ground truth (--streams " << StreamLayoutName(streams)
             << "): " << judged.Describe() << "\n";
    const VerifyReport report =
        streams == proven
            ? Agreement(s, CommModel::kNccl, streams, judged.runs_to_end).first
            : Verify(s, Options(CommModel::kNccl, streams, false));
    RC_ASSERT(report.Find("deadlock")->ok() == judged.runs_to_end);
    RC_ASSERT(report.ok == judged.sound());
    verdicts += std::string(" ") + std::string(StreamLayoutName(streams)) +
                (report.ok ? ":sound" : ":fails");
  }
  RC_ASSERT(truth::Run(s, CommModel::kNccl, StreamLayout::kRank).runs_to_end ==
            truth::Run(plain, CommModel::kNccl, StreamLayout::kRank).runs_to_end);
  RC_TAG(options.kind + (waits > 0 ? "" : " (WAIT groups: no WAIT_SEND)") + verdicts);
}

}  // namespace
}  // namespace pipeproof
