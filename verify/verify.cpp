// Verify(): the six checks in order, and Simulate(). See verify.h for what each check means and
// what happens to the later checks when one fails.

#include "verify/verify.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "schedule/lower.h"
#include "schedule/threads.h"
#include "verify/internal.h"

namespace pipeproof {
namespace {

using namespace verify_internal;

constexpr const char* kLaterChecks[] = {"dependencies", "matching", "deadlock", "memory", "timing"};

void RequireValid(const Costs& c) {
  for (double x : {c.forward, c.backward, c.input_grad, c.weight_grad, c.overlap_fb, c.latency}) {
    if (!std::isfinite(x) || x < 0) {
      throw InputError(fmt::format("costs must be non-negative numbers ({})", ToString(c)));
    }
  }
}

// The schedule with its topology completed and checked: InputError when it is not a schedule.
// A copy (in `storage`) only where the input lacks part of its topology: what the readers and
// generators make is complete, and copying millions of actions costs more than checking them.
const Schedule& Completed(const Schedule& input, std::optional<Schedule>& storage) {
  Schedule shape;  // the topology alone
  shape.ranks = input.ranks;
  shape.stages = input.stages;
  shape.microbatches = input.microbatches;
  shape.placement = input.placement;
  shape.params = input.params;
  shape.routes = input.routes;
  shape.program.resize(input.program.size());  // rows without their actions: counted, not copied
  CompleteTopology(shape);
  if (shape.placement == input.placement && shape.params == input.params && shape.routes == input.routes &&
      shape.program.size() == input.program.size()) {
    return input;
  }
  storage = input;
  storage->program.resize(shape.program.size());
  storage->placement = std::move(shape.placement);
  storage->params = std::move(shape.params);
  storage->routes = std::move(shape.routes);
  return *storage;
}

std::string EagerExplanation() {
  return "under the eager model (a send completes as soon as it is posted, as PyTorch's dry-run "
         "simulator and MPI with small messages assume) this schedule runs to its end: it relies "
         "on buffered sends, which NCCL does not have. Ranks that each send before they receive "
         "wait for each other's receive forever (pytorch/pytorch issue 172668). Post each "
         "exchange's SEND and RECV in one group (one WAIT after both) or order them so that "
         "one side receives first.";
}

// The first SEND or RECV without a partner on a rank of `cycle`, as "rank r [i] ACTION"; "" when
// there is none (a stray op on another rank is not this deadlock's cause).
std::string FirstLeftOver(const Schedule& s, const Messages& messages,
                          const std::vector<CycleStep>& cycle) {
  std::set<int> ranks;
  for (const CycleStep& step : cycle) ranks.insert(step.rank);
  for (int r : ranks) {
    for (int i = 0; i < static_cast<int>(s.program[r].size()); ++i) {
      if (messages.peer[r][i] >= 0 && !messages.partner[r][i].valid()) return Where(s, r, i);
    }
  }
  return "";
}

// The advice when the cause is a SEND or RECV that is missing on the other side: grouping would
// not help, the missing op would.
std::string MissingOpExplanation(const std::string& left_over) {
  return fmt::format(
      "the cause is a message without a partner: {} is left over (see matching), so this rank "
      "pair's sends and receives differ in number and every later message of the pair meets the "
      "wrong partner, or none. Add the missing RECV (or SEND); grouping or reordering the others "
      "does not fix it.",
      left_over);
}

// Why the hang of a deadlock under nccl comes and goes with the model size, or does not.
std::string MessageSizeCaveat(bool eager_runs, bool setup) {
  if (setup) return "it hangs at any message size: the set-up moves no data";
  return eager_runs
             ? "on hardware this hang shows only above some message size: NCCL completes a send "
               "that fits its buffers before the receive is posted (the rendezvous is the worst "
               "case), which is why such hangs come and go with the model size"
             : "it hangs at any message size: the cycle holds even where sends never block";
}

// Whether two cycles block the same actions (each prover words its reasons its own way).
bool SameActions(const std::vector<CycleStep>& a, const std::vector<CycleStep>& b) {
  auto actions = [](const std::vector<CycleStep>& cycle) {
    std::vector<std::pair<int, int>> out;
    for (const CycleStep& step : cycle) out.push_back({step.rank, step.index});
    std::sort(out.begin(), out.end());
    return out;
  };
  return actions(a) == actions(b);
}

// What the report asks besides the verdict, each a simulation of the whole schedule: the verdict
// under the other stream layouts (nccl; a deadlock names the layouts it holds under, a layout
// sound only thanks to its several streams says so) and, for a deadlock of rendezvous waits,
// whether the eager model would run it.
struct OtherVerdicts {
  std::vector<std::pair<StreamLayout, bool>> layouts;  // the chosen one's first
  bool eager_runs = false;
};

// The questions are answered half on a second core, which starts before the proof and so has
// the time Z3 takes: on a deadlocked file of 4M actions they were as long as the rest together.
class OtherQuestions {
 public:
  OtherQuestions(const Schedule& s, const RouteIndex& routes, const Messages& messages,
                 const ReceiveIndex& receives, const VerifyOptions& options, bool complete,
                 bool ask_eager)
      : s_(s), routes_(routes), messages_(messages), receives_(receives), options_(options), complete_(complete) {
    if (options.model == CommModel::kNccl) {
      for (StreamLayout other : kStreamLayouts) {
        if (other == options.streams || (complete && other != StreamLayout::kRank)) continue;
        questions_.push_back({CommModel::kNccl, other});
      }
    }
    if (ask_eager) questions_.push_back({CommModel::kEager, options.streams});
    if (questions_.size() > 1) beside_.emplace([this] { return AnswerFrom(Half()); });
  }

  OtherVerdicts Answers() {
    std::vector<char> answers = AnswerFrom(0, beside_ ? Half() : questions_.size());
    if (beside_) {
      const std::vector<char> rest = beside_->get();
      answers.insert(answers.end(), rest.begin(), rest.end());
    }
    OtherVerdicts out;
    if (options_.model == CommModel::kNccl) out.layouts.push_back({options_.streams, complete_});
    for (size_t k = 0; k < questions_.size(); ++k) {
      if (questions_[k].first == CommModel::kEager) {
        out.eager_runs = answers[k];
      } else {
        out.layouts.push_back({questions_[k].second, answers[k] != 0});
      }
    }
    return out;
  }

 private:
  size_t Half() const { return questions_.size() / 2; }  // the caller's part; the rest beside
  std::vector<char> AnswerFrom(size_t first, size_t end = SIZE_MAX) const {
    std::vector<char> answers;
    for (size_t k = first; k < std::min(end, questions_.size()); ++k) {
      answers.push_back(RunsToEnd(s_, routes_, messages_, receives_, questions_[k].first, questions_[k].second));
    }
    return answers;
  }
  const Schedule& s_;
  const RouteIndex& routes_;
  const Messages& messages_;
  const ReceiveIndex& receives_;
  const VerifyOptions& options_;
  const bool complete_;  // the chosen layout's verdict
  std::vector<std::pair<CommModel, StreamLayout>> questions_;
  std::optional<Beside<std::vector<char>>> beside_;
};

// The lines on the other stream layouts, under the nccl model.
std::vector<std::string> LayoutLines(StreamLayout chosen, bool complete,
                                     const std::vector<std::pair<StreamLayout, bool>>& verdicts,
                                     bool setup_deadlock) {
  std::vector<std::string> lines;
  if (!complete) {
    std::vector<std::string> others;
    for (const auto& [layout, sound] : verdicts) {
      if (layout == chosen) continue;
      others.push_back(fmt::format("--streams {} {}", StreamLayoutName(layout),
                                   sound ? "runs to its end" : "hangs too"));
    }
    lines.push_back(fmt::format("under the other stream layouts: {}", fmt::join(others, "; ")));
    if (setup_deadlock) {
      lines.push_back(
          "a deadlock of set-up: each pair communicator is created at the first op between its "
          "two ranks and holds both hosts until each has reached its first op with the other, so "
          "ranks that meet their peers in crossing orders hang before any data moves (NCCL's "
          "lazy connection set-up, NVIDIA/nccl issue 783); order every rank's first contacts "
          "consistently, or connect the pairs before the step");
    }
    return lines;
  }
  if (chosen == StreamLayout::kPair) {
    lines.push_back(
        "the set-up of each pair communicator at the first op between its two ranks cannot "
        "deadlock here: every rank reaches its first contacts in an order its peers meet");
  }
  for (const auto& [layout, sound] : verdicts) {
    if (layout == StreamLayout::kRank && chosen != StreamLayout::kRank && !sound) {
      lines.push_back(fmt::format(
          "but it deadlocks under --streams rank (one stream per rank): under --streams {} it "
          "relies on the NCCL kernels of several streams running at the same time, which CUDA "
          "does not guarantee (NVIDIA/nccl issues 783 and 522)",
          StreamLayoutName(chosen)));
    }
  }
  return lines;
}

// The proof's line in the report (a refused certificate fails the check with its own).
std::string ProofLine(const std::optional<Proof>& proof) {
  if (!proof) return "proof skipped (--no-z3)";
  const ProofVerdict& v = proof->verdict;
  switch (v.outcome) {
    case ProofVerdict::Outcome::kDeadlockFree:
    case ProofVerdict::Outcome::kDeadlock:
      if (v.method == "certificate") {
        return fmt::format("certified: the simulated timing satisfies all {} timing constraints of the "
                           "independent encoding ({} variables, {:.2f} s)",
                           v.constraints, v.variables, v.seconds);
      }
      if (v.method == "cycle") {
        return fmt::format("Z3 proves it: the {} timing constraints of the cycle are unsatisfiable ({} "
                           "constraints in all, {:.2f} s)",
                           v.proved_constraints, v.constraints, v.seconds);
      }
      return fmt::format("Z3 proves it: the timing constraints are {} ({} variables, {} constraints, {:.2f} s)",
                         v.outcome == ProofVerdict::Outcome::kDeadlock ? "unsatisfiable" : "satisfiable",
                         v.variables, v.constraints, v.seconds);
    case ProofVerdict::Outcome::kNoZ3:
      return "proof skipped: this build has no Z3; the verdict stands on the event simulation";
    default:
      return fmt::format("proof skipped: {}; the verdict stands on the event simulation", v.note);
  }
}

CheckResult DeadlockCheck(const Schedule& s, const RouteIndex& routes, const Messages& messages,
                          const ReceiveIndex& receives, const VerifyOptions& options,
                          const SimulationResult& sim, VerifyReport& report) {
  CheckResult check;
  check.name = "deadlock";
  const std::string semantics = DescribeSemantics(options.model, options.streams);
  const bool complete = sim.timeline.complete;
  const bool nccl = options.model == CommModel::kNccl;
  // Buffered sends would let it run: true for a cycle of rendezvous waits, not for a set-up (no
  // data moves before it, so no buffering helps), though the eager model has no set-up either.
  // (Asked only where no op lacks its partner: the advice is then about the missing op.)
  const std::string left_over = complete ? "" : FirstLeftOver(s, messages, sim.cycle);
  OtherQuestions others(s, routes, messages, receives, options, complete,
                        /*ask_eager=*/!complete && nccl && left_over.empty() && !sim.setup_deadlock);
  std::optional<Proof> proved;  // the certificate's or Z3's
  if (options.use_z3) {
    proved = ProveDeadlockVerdict(s, routes, messages, options.model, options.streams, sim,
                              {.search = options.z3_search,
                               .timeout_s = options.z3_timeout_s,
                               .memory_mb = options.z3_memory_mb,
                               .progress = options.progress});
  }
  ProofVerdict& verdict = check.proof.emplace();
  if (proved) verdict = proved->verdict;
  const std::string proof = ProofLine(proved);
  if (proved && proved->refused) {
    verdict.agrees_with_simulation = false;
    check.status = CheckStatus::kFail;
    check.message = fmt::format(
        "pipeproof bug: the event simulation says deadlock-free, but its timing is no certificate: {}; "
        "please report this schedule",
        verdict.note);
    return check;
  }
  const bool proven = verdict.proven();
  const bool proven_free = verdict.outcome == ProofVerdict::Outcome::kDeadlockFree;
  if (proven && proven_free != complete) {
    verdict.agrees_with_simulation = false;
    check.status = CheckStatus::kFail;
    check.message = fmt::format(
        "pipeproof bug: the event simulation says {}, Z3 says {}; please report this schedule",
        complete ? "deadlock-free" : "deadlock", proven_free ? "deadlock-free" : "deadlock");
    check.details = CycleLines(complete ? proved->cycle : sim.cycle);
    return check;
  }
  const OtherVerdicts other = others.Answers();
  report.layout_verdicts = other.layouts;
  if (complete) {
    check.message = fmt::format("every action runs to its end under {} (event simulation); {}",
                                semantics, proof);
    if (nccl) check.details = LayoutLines(options.streams, true, report.layout_verdicts, false);
    return check;
  }
  check.status = CheckStatus::kFail;
  report.cycle = sim.cycle;
  report.setup_deadlock = sim.setup_deadlock;
  const bool eager_runs = other.eager_runs;
  const std::vector<CycleStep>& cycle = report.cycle;
  const std::string stuck =
      cycle.size() == 1
          ? fmt::format("rank {} [{}] {} can never complete", cycle.front().rank,
                        cycle.front().index, cycle.front().action)
          : fmt::format("{} blocked actions wait for each other in a cycle", cycle.size());
  check.message = fmt::format("under {} the execution cannot finish: {}{}", semantics, stuck,
                              !left_over.empty() ? " (a SEND or RECV has no partner, see below)"
                              : eager_runs       ? " (it would run under the eager model: NCCL's "
                                                   "send/recv is a rendezvous, see below)"
                                                 : "");
  check.details = CycleLines(cycle);
  if (nccl) {
    for (std::string& line :
         LayoutLines(options.streams, false, report.layout_verdicts, sim.setup_deadlock)) {
      check.details.push_back(std::move(line));
    }
  }
  if (!left_over.empty()) {
    check.details.push_back(MissingOpExplanation(left_over));
  } else if (eager_runs) {
    check.details.push_back(EagerExplanation());
  }
  if (nccl && left_over.empty()) {
    check.details.push_back(MessageSizeCaveat(eager_runs, sim.setup_deadlock));
  }
  check.details.push_back(proof);
  if (proved && !proved->cycle.empty() && verdict.method == "search" && !SameActions(proved->cycle, cycle)) {
    check.details.push_back("the cycle Z3's unsat core holds:");
    for (const std::string& line : CycleLines(proved->cycle)) check.details.push_back("  " + line);
  }
  check.details.push_back("around the stuck point:");
  for (const std::string& line : sim.stuck_grid) check.details.push_back("  " + line);
  return check;
}

MemoryReport MeasureWithBound(const Schedule& s, const VerifyOptions& options) {
  MemoryReport memory = MeasureMemory(s);
  if (options.max_activations) {
    memory.bound = *options.max_activations;
    memory.bound_source = "--max-activations";
  } else if (std::optional<ActivationBound> kind = KindActivationBound(s)) {
    memory.bound = kind->bound;
    memory.bound_source = kind->source;
  }
  return memory;
}

// A compute-only schedule whose compute order admits no execution: Lower() says why.
void ReportUnlowerable(const Schedule& s, const VerifyOptions& options, const std::string& problem,
                       VerifyReport& report) {
  RouteIndex routes(s);
  Messages none = MatchMessages(s, routes);
  CheckResult dependencies = CheckDependencies(s, routes, none, /*local_only=*/true);
  if (dependencies.ok()) {
    dependencies.message =
        "every input made on the same rank is computed before it is used; "
        "inputs from other ranks cannot be placed (see deadlock)";
  }
  report.checks.push_back(std::move(dependencies));
  report.checks.push_back(Skipped("matching",
                                  "the compute-only schedule cannot be lowered, so "
                                  "it has no messages to match"));
  CheckResult deadlock;
  deadlock.name = "deadlock";
  deadlock.status = CheckStatus::kFail;
  deadlock.message =
      "the compute order cannot run to its end under any communication model, "
      "so no placement of SEND/RECV can be deadlock-free";
  for (size_t start = 0, end; start < problem.size(); start = end + 1) {
    end = problem.find('\n', start);
    if (end == std::string::npos) end = problem.size();
    deadlock.details.push_back(problem.substr(start, end - start));
  }
  report.checks.push_back(std::move(deadlock));
  report.memory = MeasureWithBound(s, options);
  report.checks.push_back(CheckMemory(s, report.memory));
  report.checks.push_back(Skipped("timing", "the execution deadlocks"));
}

}  // namespace

int64_t VerifierMemoryBytes(const Schedule& schedule, const VerifyOptions& options) {
  constexpr int64_t kBytesPerAction = 384;
  constexpr int64_t kFixed = 16 << 20;
  const int64_t z3 = options.use_z3 && options.z3_search ? options.z3_memory_mb << 20 : 0;
  return kFixed + kBytesPerAction * schedule.ActionCount() + z3;
}

VerifyReport Verify(const Schedule& input, const VerifyOptions& options) {
  if (options.max_activations && *options.max_activations < 0) {
    throw InputError(
        fmt::format("--max-activations must be at least 0 (got {})", *options.max_activations));
  }
  const Costs costs = options.costs.value_or(Costs{});
  RequireValid(costs);
  std::optional<Schedule> owned;  // a completed or lowered copy, where one is needed
  const Schedule* schedule = &Completed(input, owned);
  VerifyReport report;
  report.model = options.model;
  report.streams = options.streams;
  report.costs = costs;
  auto phase = [&](std::string_view name, int k) {
    if (options.progress) options.progress(name, k, 6);
  };

  phase("structure", 0);
  // A large schedule's messages are matched beside the structure check: MatchMessages reads a
  // schedule of any content safely (its look-ups are range-checked; a program row per rank is
  // all it assumes), and what it finds is used only once the structure passes.
  const bool worth_a_thread = schedule->ActionCount() >= kActionsWorthAThread;
  const bool match_beside = worth_a_thread && HasComm(*schedule) &&
                            static_cast<int>(schedule->program.size()) == schedule->ranks;
  std::optional<RouteIndex> routes_beside;
  std::optional<Messages> messages_beside;
  {
    Beside<CheckResult> structure([&] { return CheckStructure(*schedule); }, match_beside);
    if (match_beside) {
      routes_beside.emplace(*schedule);
      messages_beside = MatchMessages(*schedule, *routes_beside);
    }
    report.checks.push_back(structure.get());
  }
  if (!report.checks.back().ok()) {
    for (const char* name : kLaterChecks) {
      report.checks.push_back(Skipped(name, "the structure check failed"));
    }
    report.ok = false;
    return report;
  }

  if (!HasComm(*schedule)) {
    LoweringResult lowered = Lower(*schedule);
    if (!lowered.schedule) {
      ReportUnlowerable(*schedule, options, lowered.problem, report);
      report.ok = false;
      return report;
    }
    owned = std::move(*lowered.schedule);
    schedule = &*owned;
    report.lowered = true;
    report.lowering_note = fmt::format(
        "compute-only input: verified after lowering, with {} SEND/RECV placed by Lower() "
        "(pipeproof convert --lower writes that schedule; the positions below are in it)",
        schedule->ActionCount() - input.ActionCount());
  }

  const Schedule& s = *schedule;
  const RouteIndex routes = routes_beside ? std::move(*routes_beside) : RouteIndex(s);
  const Messages messages = messages_beside ? std::move(*messages_beside) : MatchMessages(s, routes);
  const ReceiveIndex receives(s, messages);  // shared by the dependencies and the simulation
  phase("dependencies", 1);
  // The dependencies check reads what the simulation reads and writes nothing it shares: on the
  // second core, while the simulation's graph runs, it costs no wall time.
  std::optional<CheckResult> dependencies;
  phase("matching", 2);
  CheckResult matching = CheckMatching(s, messages);
  phase("deadlock: event simulation", 3);
  SimulationResult sim = RunSimulation(
      s, routes, messages, receives, options.model, costs, options.streams,
      /*record_order=*/options.use_z3 && !options.z3_search,
      /*beside=*/[&] { dependencies = CheckDependencies(s, routes, messages, receives); });
  report.checks.push_back(std::move(*dependencies));
  report.checks.push_back(std::move(matching));
  report.checks.push_back(DeadlockCheck(s, routes, messages, receives, options, sim, report));
  phase("memory", 4);
  report.memory = MeasureWithBound(s, options);
  report.checks.push_back(CheckMemory(s, report.memory));
  if (sim.timeline.complete) {
    report.checks.push_back(TimingCheck(sim.timeline, costs, options.model, options.streams,
                                        !options.costs.has_value()));
    report.timeline = std::move(sim.timeline);
  } else {
    report.checks.push_back(Skipped("timing", "the execution deadlocks"));
  }
  report.ok = true;
  for (const CheckResult& c : report.checks) report.ok = report.ok && c.ok();
  return report;
}

Timeline Simulate(const Schedule& input, CommModel model, const Costs& costs,
                  StreamLayout streams) {
  RequireValid(costs);
  std::optional<Schedule> owned;
  const Schedule& s = Completed(input, owned);
  const CheckResult structure = CheckStructure(s);
  if (!structure.ok()) {
    throw InputError("the schedule fails the structure check, so it cannot be simulated: " +
                     structure.message);
  }
  if (HasComm(s)) {
    const RouteIndex routes(s);
    return RunSimulation(s, routes, MatchMessages(s, routes), model, costs, streams).timeline;
  }
  // Compute-only: simulate the lowered schedule and keep the input's actions. Lowering keeps
  // them in order and only adds SEND/RECV, so the k-th of them is the same action in both.
  LoweringResult lowered = Lower(s);
  Timeline t;
  if (lowered.schedule) {
    const RouteIndex routes(*lowered.schedule);
    t = RunSimulation(*lowered.schedule, routes, MatchMessages(*lowered.schedule, routes), model,
                      costs, streams)
            .timeline;
  }
  Timeline out;
  out.ranks.resize(s.ranks);
  out.busy.assign(s.ranks, 0.0);
  out.complete = lowered.schedule && t.complete;
  out.makespan = t.makespan;
  for (int r = 0; r < s.ranks; ++r) {
    size_t k = 0;
    for (int i = 0; i < static_cast<int>(s.program[r].size()); ++i) {
      TimedAction ta{r, i, std::numeric_limits<double>::infinity(),
                     std::numeric_limits<double>::infinity()};
      if (lowered.schedule) {
        while (IsComm(lowered.schedule->program[r][k].op)) ++k;  // only SEND/RECV were added
        ta.start = t.ranks[r][k].start;
        ta.end = t.ranks[r][k].end;
        ++k;
      }
      out.ranks[r].push_back(ta);
    }
    out.busy[r] = lowered.schedule ? t.busy[r] : 0;
    out.bubble.push_back(out.makespan - out.busy[r]);
  }
  return out;
}

}  // namespace pipeproof
