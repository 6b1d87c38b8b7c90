// Property suite 4: small generated schedules (2 to 4 ranks, up to 3 x ranks microbatches) under
// random legal fault plans (delays before posting, delivery and compute, stragglers, shuffled
// posting order, NaN-poisoned freed buffers), on the threads transport: every loss, output and
// gradient equals the exact-mode reference bit for bit. Under a random negative control (a
// flipped bit, two swapped messages, a dropped message, a killed rank) the run never passes.
//
// A failing case prints, besides RapidCheck's counterexample, the `pipeproof run ... --replay`
// command that reruns it with the same fault plan.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "fuzz/campaign.h"
#include "fuzz/property.h"

namespace pipeproof {

// How RapidCheck prints a case (found by lookup).
inline void showValue(const CampaignCase& c, std::ostream& os) { os << c.Describe() << ", fault seed " << c.faults.seed; }

namespace {

CaseSettings Settings() {
  CaseSettings s;
  s.timeout_s = 10;
  s.control_timeout_s = 0.2;  // drops and kills hang: the watchdog ends them after this long
  return s;
}

rc::Gen<DelaySpec> GenDelay() {
  return rc::gen::exec([] {
    DelaySpec d;
    d.distribution = *rc::gen::element(DelayDistribution::kUniform, DelayDistribution::kExponential,
                                       DelayDistribution::kHeavyTailed);
    d.mean_us = *rc::gen::inRange(1, 150);
    d.at_post = *rc::gen::arbitrary<bool>();
    d.at_deliver = *rc::gen::arbitrary<bool>();
    d.at_compute = !d.at_post && !d.at_deliver ? true : *rc::gen::arbitrary<bool>();
    return d;
  });
}

// A small case with legal faults only.
rc::Gen<CampaignCase> GenLegalCase() {
  return rc::gen::exec([] {
    CampaignCase c;
    GenerateOptions& g = c.schedule;
    g.kind = *rc::gen::elementOf(GeneratorKinds());
    g.ranks = *rc::gen::elementOf(ValidRanks(g.kind, 4));
    g.microbatches = *rc::gen::elementOf(ValidMicrobatches(g.kind, g.ranks, 3 * g.ranks));
    g.virtual_stages = *rc::gen::inRange(1, 4);
    g.overlap = *rc::gen::arbitrary<bool>();
    FaultOptions& f = c.faults;
    f.seed = *rc::gen::inRange<uint64_t>(0, 1000000);
    if (*rc::gen::arbitrary<bool>()) f.delay = *GenDelay();
    if (*rc::gen::arbitrary<bool>()) f.stragglers.push_back({*rc::gen::inRange(0, g.ranks), 1.0 + *rc::gen::inRange(1, 4)});
    f.shuffle = *rc::gen::arbitrary<bool>();
    f.poison = *rc::gen::arbitrary<bool>();
    return c;
  });
}

// Logs the command that replays `c` with `plan`, its plan kept in a file for that.
void LogReplay(const CampaignCase& c, const FaultPlan& plan, const CaseOutcome& out) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("pipeproof-property-plan-" + std::to_string(::getpid()) + ".json")).string();
  std::ofstream(path) << plan.Json();
  RC_LOG() << VerdictName(out.verdict) << ": " << out.headline << "\nreplay: "
           << ReplayCommand(PIPEPROOF_BINARY, c, Settings(), path) << "\n";
}

PIPEPROOF_PROPERTY(ExecutionProperties, LegalFaultPlansGiveBitIdenticalResults, ()) {
  const CampaignCase c = *GenLegalCase();
  const FaultPlan plan = CasePlan(c, Settings());
  const CaseOutcome out = RunCase(*MakeThreadRunner(), c, plan, Settings());
  LogReplay(c, plan, out);
  RC_TAG(c.schedule.kind);
  RC_ASSERT(out.verdict == Verdict::kPass);
}

PIPEPROOF_PROPERTY(ExecutionProperties, NegativeControlsAreAlwaysCaught, ()) {
  CampaignCase c = *GenLegalCase();
  const int control = *rc::gen::element(0, 1, 2, 3);
  if (control == 3) {
    c.faults.kill_rank = *rc::gen::inRange(0, c.schedule.ranks);
  } else {
    c.faults.corrupt = std::vector{CorruptKind::kBitflip, CorruptKind::kSwap, CorruptKind::kDrop}[control];
  }
  FaultPlan plan;
  try {
    plan = CasePlan(c, Settings());
  } catch (const InputError&) {
    RC_DISCARD("a swap needs a unit that sends two messages to one rank");
  }
  const CaseOutcome out = RunCase(*MakeThreadRunner(), c, plan, Settings());
  LogReplay(c, plan, out);
  RC_TAG(control == 3 ? "kill" : std::string(CorruptKindName(*c.faults.corrupt)));
  RC_ASSERT(out.verdict == Verdict::kPass);  // a control passes when it is caught
  RC_ASSERT(out.exit_code != 0);
}

}  // namespace
}  // namespace pipeproof
