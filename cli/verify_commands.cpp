// verify, simulate, repair: parse the flags, call verify/, print the report (docs/design.md,
// "Verification" and "Repair").

#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/command.h"
#include "cli/exit_codes.h"
#include "render/perfetto_trace.h"
#include "render/progress.h"
#include "render/timeline_svg.h"
#include "render/timeline_view.h"
#include "verify/repair.h"
#include "verify/verify.h"

namespace pipeproof {
namespace {

struct VerifyFlags {
  ScheduleInput input;
  CommFlags comm;
  bool json = false;
  ProofFlags proof;
  std::optional<int> max_activations;
  std::string svg;
};

void DeclareVerify(CLI::App* cmd, VerifyFlags& f) {
  AddScheduleInputOptions(cmd, f.input);
  f.comm.Add(cmd);
  cmd->add_flag("--json", f.json, "print JSON");
  f.proof.Add(cmd);
  cmd->add_option("--max-activations", f.max_activations,
                  "memory bound per rank in stage-chunks (default: the generator kind's bound)")
      ->check(IntegerIn(0, kMaxStageMicrobatches));
  cmd->add_option("--svg", f.svg,
                  "draw the timeline as SVG: a deadlock up to its stuck point, the cycle of blocked "
                  "actions highlighted; otherwise the timing simulation");
}

// A deadlock up to its stuck point, else the timing simulation; nothing (saying why) when the
// schedule has nothing to draw.
void WriteVerifiedSvg(const VerifyFlags& f, const Schedule& schedule, const VerifyReport& report) {
  SvgOptions picture;
  picture.show_comm = !report.cycle.empty();
  std::optional<TimelineView> view;
  try {
    Schedule titled = schedule;  // a file of unknown origin is titled by its name
    if (titled.kind.empty()) titled.kind = std::filesystem::path(f.input.path).filename().string();
    view = VerifiedView(titled, report);
  } catch (const InputError& e) {  // nothing to draw; the report says why
    std::cerr << "pipeproof: --svg " << f.svg << " not written: " << e.message() << '\n';
  }
  if (view) WriteOutput(f.svg, TimelineSvg(*view, picture));
}

int RunVerify(const VerifyFlags& f) {
  VerifyOptions options;
  f.comm.Apply(options);
  f.proof.Apply(options);
  options.max_activations = f.max_activations;
  const Schedule schedule = LoadSchedule(f.input);
  Progress progress("verify");
  options.progress = progress.Callback();
  const VerifyReport report = Verify(schedule, options);
  progress.Finish();
  if (!f.svg.empty()) WriteVerifiedSvg(f, schedule, report);
  std::cout << (f.json ? report.Json() : report.Text());
  HintKindThatFits(f.input, report);
  return report.ok ? kExitOk : kExitCheckFailed;
}

struct SimulateFlags {
  ScheduleInput input;
  CommFlags comm;
  bool json = false;
  std::string trace;
};

void DeclareSimulate(CLI::App* cmd, SimulateFlags& f) {
  AddScheduleInputOptions(cmd, f.input);
  f.comm.Add(cmd);
  cmd->add_flag("--json", f.json, "print JSON");
  cmd->add_option("--trace", f.trace,
                  "write the simulated timeline as Chrome/Perfetto trace JSON (one cost unit = 1 ms)");
}

int RunSimulate(const SimulateFlags& f) {
  const Costs costs = f.comm.CostsGiven().value_or(Costs{});
  const CommModel model = f.comm.Model();
  const StreamLayout streams = f.comm.Streams();
  const Schedule schedule = LoadSchedule(f.input);
  const Timeline t = Simulate(schedule, model, costs, streams);
  if (!f.trace.empty()) {
    WriteOutput(f.trace, PerfettoTrace(SimulatedView(schedule, t, costs, model, streams)));
  }
  std::cout << (f.json ? TimingJson(t, costs, model, streams)
                       : TimingText(t, costs, model, streams));
  return t.complete ? kExitOk : kExitCheckFailed;
}

struct RepairFlags {
  ScheduleInput input;
  CommFlags comm;
  ProofFlags proof;
  bool json = false;
  std::string out;
};

void DeclareRepair(CLI::App* cmd, RepairFlags& f) {
  AddScheduleInputOptions(cmd, f.input);
  f.comm.Add(cmd);
  f.proof.Add(cmd);
  cmd->add_flag("--json", f.json, "print the edits and the verdicts before and after as JSON");
  cmd->add_option("-o,--output", f.out,
                  "write the repaired schedule here, in the input's format (- for stdout: the "
                  "report then goes to stderr)");
}

int RunRepair(const RepairFlags& f) {
  VerifyOptions options;
  f.comm.Apply(options);
  f.proof.Apply(options);
  const ScheduleFile file = LoadScheduleFile(f.input);
  // A repaired schedule has its SEND/RECVs: a CSV read as compute-only is written with them.
  const Format format = file.format == Format::kCsvCompute ? Format::kCsv : file.format;
  if (const std::optional<Format> wanted = FormatOfExtension(f.out); wanted && *wanted != format) {
    throw InputError(fmt::format("-o {}: repair writes the input's format ({}); name the output .{}", f.out,
                                 FormatName(format), FormatName(format)));
  }
  Progress progress("repair");
  options.progress = progress.Callback();
  const RepairResult result = Repair(file.schedule, options);
  progress.Finish();
  const bool repaired = result.outcome == RepairResult::Outcome::kRepaired;
  std::ostream& report = f.out == "-" ? std::cerr : std::cout;
  if (f.json) {
    report << result.Json();
  } else {
    report << result.Text();
  }
  if (!f.out.empty() && result.outcome != RepairResult::Outcome::kComputeCannotRun) {
    WriteOutput(f.out, repaired ? RewriteSchedule(file.text, format, result.schedule) : file.text);
    if (!f.json && f.out != "-") report << "wrote " << f.out << "\n";
  } else if (f.out.empty() && repaired && !f.json) {
    report << "(give -o FILE to write the repaired schedule)\n";
  }
  if (result.outcome == RepairResult::Outcome::kComputeCannotRun) return kExitCheckFailed;
  return RepairSound(result.after) ? kExitOk : kExitCheckFailed;
}

}  // namespace

void AddVerifyCommands(CLI::App& app, Commands& commands) {
  AddCommand<VerifyFlags>(
      app, commands, "verify",
      "Check a schedule: structure, dependencies, matching, deadlock (simulation + Z3), memory, "
      "timing. Exit 0 when all pass, 1 when a check fails, 2 on bad input",
      DeclareVerify, RunVerify);
  AddCommand<SimulateFlags>(
      app, commands, "simulate",
      "Time a schedule: makespan, busy time and bubble per rank under given costs",
      DeclareSimulate, RunSimulate);
  AddCommand<RepairFlags>(
      app, commands, "repair",
      "Turn a schedule that deadlocks or mixes up messages into a sound one with the fewest "
      "edits of its communication; the compute order stays. Exit 0 when repaired or already "
      "sound, 1 when the compute order itself cannot run, 2 on bad input",
      DeclareRepair, RunRepair);
}

}  // namespace pipeproof
