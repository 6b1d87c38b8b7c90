// run: verify a schedule, execute it on real ranks under injected faults, compare with the
// sequential reference (docs/design.md, "Execution and the reference"). Exit 0 match, 1 mismatch (a
// caught bitflip or swap included), 2 bad input or a schedule that fails verification, 3 hang,
// dead rank or another runtime fault (a caught drop or kill included).

#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>


#include "cli/command.h"
#include "cli/exit_codes.h"
#include "exec/fault_draw.h"
#include "exec/run.h"
#include "exec/schedule_run.h"
#include "exec/world.h"
#include "render/perfetto_trace.h"
#include "render/progress.h"
#include "render/run_report.h"
#include "render/timeline_view.h"
#include "schedule/generate.h"
#include "schedule/lower.h"
#include "verify/verify.h"

namespace pipeproof {
namespace {

struct RunFlags {
  // The schedule: a file, or a generator (--kind, --ranks, -m and the kind's options).
  ScheduleInput input;
  std::optional<int> ranks;
  KindFlags kind;
  bool allow_deadlock = false;
  ProofFlags proof;
  StageModelFlags model;
  // Comparison.
  bool exact = false;
  bool tolerance = false;
  std::optional<double> rtol;
  std::optional<double> atol;
  // Execution.
  WorldFlags world;
  double timeout = 30;
  size_t flight_tail = 8;
  // Faults.
  std::string delay;
  std::string delay_at;
  uint64_t seed = 1;
  std::vector<std::string> stragglers;
  bool shuffle = false;
  bool poison = false;
  std::string corrupt;
  std::optional<int> kill_rank;
  std::string replay;
  std::string save_plan;
  // Output.
  std::string report;
  std::string trace;
  std::string html;
  bool quiet = false;
};

void DeclareRun(CLI::App* cmd, RunFlags& f) {
  AddScheduleInputOptions(cmd, f.input, FileArgument::kOptional);
  cmd->add_option("-r,--ranks", f.ranks, "ranks of the generated schedule")->check(IntegerIn(1, kMaxRanks));
  f.kind.Add(cmd);
  cmd->add_flag("--allow-deadlock", f.allow_deadlock,
                "run a schedule that fails only the deadlock check, to see it hang on real ranks "
                "(the watchdog stops it: exit 3)");
  f.proof.Add(cmd);
  f.model.Add(cmd);

  cmd->add_flag("--exact", f.exact, "results must equal the reference bit for bit (the default)");
  cmd->add_flag("--tolerance", f.tolerance,
                "results must be close to a plain microbatch-order reference: |run - ref| <= rtol "
                "|ref| + atol max|ref| (defaults: f64 rtol 1e-9 atol 1e-12, f32 rtol 1e-4 atol 1e-5)");
  cmd->add_option("--rtol", f.rtol, "relative tolerance (with --tolerance)")->check(NonNegativeFinite());
  cmd->add_option("--atol", f.atol, "absolute tolerance, as a fraction of the tensor's largest reference value (with --tolerance)")
      ->check(NonNegativeFinite());

  f.world.Add(cmd);
  cmd->add_option("--timeout", f.timeout, "seconds without progress before a hang is declared")
      ->check(NumberIn(0.01, 86400))
      ->capture_default_str();
  cmd->add_option("--flight-tail", f.flight_tail, "events per rank in a hang's dump")
      ->check(IntegerIn(1, 4096))
      ->capture_default_str();

  cmd->add_option("--delay", f.delay,
                  "random delays: uniform|exponential|heavy[:MEAN], e.g. exp:100us (before posting, "
                  "before delivery and before compute)");
  cmd->add_option("--delay-at", f.delay_at, "where delays go: any of post,deliver,compute");
  cmd->add_option("--seed", f.seed, "seed of the fault plan")->check(SeedValue())->capture_default_str();
  cmd->add_option("--straggler", f.stragglers, "slow a rank's computes: RANK:FACTOR (repeatable)");
  cmd->add_flag("--shuffle", f.shuffle, "shuffle the posting order inside each unit (legal: keeps each rank pair's order)");
  cmd->add_flag("--poison", f.poison, "fill every freed buffer with NaN");
  cmd->add_option("--corrupt", f.corrupt, "negative control, must be caught: bitflip (one bit of one message; a mismatch), swap (two "
                  "messages that one WAIT group sends to one rank; a mismatch; schedules without such a "
                  "group, as the lowered kinds and PyTorch's runtime orders, refuse it) or drop (one "
                  "message; a hang)")
      ->check(CLI::IsMember({"bitflip", "swap", "drop"}));
  cmd->add_option("--kill-rank", f.kill_rank, "negative control: this rank stops dead at a random action")
      ->check(IntegerIn(0, kMaxRanks - 1));
  cmd->add_option("--replay", f.replay, "take every fault from this fault plan (JSON) instead of drawing them");
  cmd->add_option("--save-plan", f.save_plan, "write the fault plan of this run (JSON)");

  cmd->add_option("--report", f.report,
                  "write the full report as JSON to this file, with the recorded timeline (for "
                  "pipeproof render --from-run)");
  cmd->add_option("--trace", f.trace,
                  "write what ran when as Chrome/Perfetto trace JSON: every rank's computes and "
                  "communication units with real times, messages as flow arrows");
  cmd->add_option("--html", f.html,
                  "write the mismatch report as a self-contained HTML page (summary, per-tensor "
                  "table, heatmaps of where the errors are)");
  cmd->add_flag("-q,--quiet", f.quiet, "print only the result line (and a hang's dump)");
}

Schedule ScheduleFrom(const RunFlags& f, std::string& name) {
  Schedule schedule;
  if (!f.input.path.empty()) {
    if (f.ranks) throw InputError("--ranks generates a schedule; it cannot go with a schedule FILE");
    if (f.kind.Given()) {
      throw InputError(
          "--no-overlap, --virtual-stages and --wait-sends shape a generated schedule; they cannot "
          "go with a schedule FILE");
    }
    schedule = LoadSchedule(f.input);
    name = fmt::format("{} ({}{} ranks, {} stages, {} microbatches)", f.input.path,
                       schedule.kind.empty() ? "" : schedule.kind + ", ", schedule.ranks, schedule.stages,
                       schedule.microbatches);
  } else {
    const TopologyOptions& t = f.input.topology;
    if (t.kind.empty() || !f.ranks || !t.microbatches) {
      throw InputError("run needs a schedule: a FILE, or --kind KIND --ranks R --microbatches M");
    }
    GenerateOptions g;
    g.kind = t.kind;
    g.ranks = *f.ranks;
    g.microbatches = *t.microbatches;
    f.kind.Apply(g);
    schedule = Generate(g);
    name = fmt::format("{}, {} ranks, {} stages, {} microbatches", g.kind, schedule.ranks, schedule.stages,
                       schedule.microbatches);
  }
  return LowerIfComputeOnly(std::move(schedule), &name);
}

ComparePolicy PolicyFrom(const RunFlags& f, DType dtype) {
  if (f.exact && f.tolerance) throw InputError("--exact and --tolerance exclude each other");
  if ((f.rtol || f.atol) && !f.tolerance) throw InputError("--rtol and --atol go with --tolerance");
  if (!f.tolerance) return ComparePolicy::Exact();
  ComparePolicy p = ComparePolicy::Tolerance(dtype);
  if (f.rtol) p.rtol = *f.rtol;
  if (f.atol) p.atol = *f.atol;
  return p;
}

bool DrawFlagsGiven(const RunFlags& f) {
  return !f.delay.empty() || !f.delay_at.empty() || !f.stragglers.empty() || f.shuffle || f.poison ||
         !f.corrupt.empty() || f.kill_rank;
}

// The faults to draw (nullopt: --replay gives the plan).
std::optional<FaultOptions> FaultOptionsFrom(const RunFlags& f) {
  if (!f.replay.empty()) {
    if (DrawFlagsGiven(f)) {
      throw InputError("--replay takes every fault from the plan; drop --delay, --straggler, --shuffle, "
                       "--poison, --corrupt and --kill-rank");
    }
    return std::nullopt;
  }
  FaultOptions o;
  o.seed = f.seed;
  if (!f.delay.empty()) {
    o.delay = DelaySpec::Parse(f.delay);
    if (!f.delay_at.empty()) o.delay->ParseWhere(f.delay_at);
  } else if (!f.delay_at.empty()) {
    throw InputError("--delay-at goes with --delay");
  }
  for (const std::string& s : f.stragglers) o.stragglers.push_back(Straggler::Parse(s));
  o.shuffle = f.shuffle;
  o.poison = f.poison;
  if (!f.corrupt.empty()) o.corrupt = CorruptKindFromName(f.corrupt);
  o.kill_rank = f.kill_rank;
  return o;
}

// Prints an outcome and writes its report; a failed run also says how to replay its faults.
void Emit(const RunFlags& f, const RunOutcome& outcome, const FaultPlan& plan) {
  const bool failed = outcome.ExitCode() != kExitOk;
  std::ostream& out = outcome.ExitCode() == kExitRuntimeFault ? std::cerr : std::cout;
  if (f.quiet) {
    if (!outcome.execution.snapshots.empty()) out << FormatDump(outcome.execution.headline, outcome.execution.snapshots);
    out << fmt::format("result: {} (exit {})\n", outcome.headline, outcome.ExitCode());
  } else {
    out << outcome.Text();
  }
  // The plan goes where the user asked (--save-plan, or beside --report); otherwise no file is
  // left behind: the same command draws the same plan from its seed.
  if (failed && f.replay.empty() && !plan.Empty()) {
    std::string path = f.save_plan;
    if (path.empty() && !f.report.empty()) {
      path = std::filesystem::path(f.report).replace_extension(".plan.json").string();
      WriteOutput(path, plan.Json());
    }
    if (path.empty()) {
      out << fmt::format(
          "replay these faults exactly: the same command (its plan is drawn from --seed {}); "
          "--save-plan PLAN keeps it as a file\n",
          f.seed);
    } else {
      out << fmt::format(
          "replay these faults exactly: the same command without the fault flags, plus --replay "
          "{}\n",
          path);
    }
  }
  out.flush();
  if (!f.report.empty()) WriteOutput(f.report, outcome.Json());
}

// The trace and the HTML report, when asked for (render/ draws them).
void WritePictures(const RunFlags& f, const RunOutcome& outcome, const Schedule& schedule, const FaultPlan& plan) {
  if (!f.trace.empty()) {
    if (outcome.timeline) {
      WriteOutput(f.trace, PerfettoTrace(RecordedView(schedule, *outcome.timeline, "", outcome.transport)));
    } else {
      std::cerr << "pipeproof: --trace " << f.trace << " not written: the run did not complete, so it recorded no "
                << "timeline (the flight recorder's dump above shows each rank's last actions)\n";
    }
  }
  if (!f.html.empty()) WriteOutput(f.html, RunHtmlReport(outcome, schedule, plan));
}

int Run(const RunFlags& f) {
  const WorldSpec spec = f.world.Spec(f.model.dtype);
  std::unique_ptr<World> world = MakeWorld(spec);
  const bool leader = world->leader();
  try {
    std::string name;
    const Schedule schedule = ScheduleFrom(f, name);
    ScheduleRunOptions options;
    options.world = spec;
    f.proof.Apply(options.verify);
    options.allow_deadlock = f.allow_deadlock;
    options.model = f.model.Config();
    options.policy = PolicyFrom(f, options.model.dtype);
    if (std::optional<FaultOptions> draw = FaultOptionsFrom(f)) {
      options.draw = *draw;
    } else {
      options.replay = ReadFaultPlan(f.replay);
    }
    options.watchdog.timeout_s = f.timeout;
    options.watchdog.flight_tail = f.flight_tail;
    options.record_timeline = !f.report.empty() || !f.trace.empty();
    options.schedule_name = name;
    // A live line while verifying and running long work (nothing for short work or with -q);
    // finished before anything else is printed.
    ProgressOptions progress_options;
    if (f.quiet || !leader) progress_options.mode = ProgressMode::kOff;
    Progress progress("run", progress_options);
    options.progress = progress.Callback();
    options.on_start = [&](const VerifyReport& report, const FaultPlan& plan) {
      if (!report.ok) {
        progress.Finish();
        std::cerr << "pipeproof: the schedule deadlocks (" << report.Find("deadlock")->message
                  << "); running it anyway (--allow-deadlock): the watchdog stops the hang\n";
      }
      if (!f.save_plan.empty()) WriteOutput(f.save_plan, plan.Json());
    };
    options.on_fatal = [&](const RunOutcome& outcome, const FaultPlan& plan) {
      progress.Finish();
      Emit(f, outcome, plan);
      WritePictures(f, outcome, schedule, plan);
    };
    const ScheduleRun run = RunSchedule(schedule, options, *world);
    progress.Finish();
    if (run.refused()) {
      if (leader) {
        std::cerr << run.report.Text();
        std::cerr << "pipeproof: error: the schedule fails verification; run refuses to execute it\n";
        HintKindThatFits(f.input, run.report);
      }
      return kExitBadInput;
    }
    if (run.outcome->leader) {
      Emit(f, *run.outcome, run.faults);
      WritePictures(f, *run.outcome, schedule, run.faults);
    }
    return run.outcome->ExitCode();
  } catch (const InputError& e) {
    if (leader) std::cerr << (e.location().empty() ? "pipeproof: " : "") << e.what() << '\n';
    return kExitBadInput;
  }
}

}  // namespace

void AddRunCommands(CLI::App& app, Commands& commands) {
  AddCommand<RunFlags>(
      app, commands, "run",
      "Verify a schedule, run it on real ranks (threads, MPI processes or one GPU's streams) under "
      "injected faults and compare everything with the sequential reference. Exit 0 match, "
      "1 mismatch, 2 bad input or a schedule that fails verification, 3 hang, dead rank or runtime "
      "fault",
      DeclareRun, Run);
}

}  // namespace pipeproof
