// verify, simulate: parse the flags, call verify/, print the report (DESIGN.md, "Verification").

#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/command.h"
#include "cli/exit_codes.h"
#include "render/perfetto_trace.h"
#include "render/progress.h"
#include "render/timeline_svg.h"
#include "render/timeline_view.h"
#include "verify/verify.h"

namespace pipeproof {
namespace {

// Flags verify and simulate share.
struct ModelFlags {
  std::string comm = "nccl";
  std::string streams = "rank";
  std::string cost;
  std::optional<double> latency;
  bool json = false;

  void Add(CLI::App* cmd) {
    cmd->add_option("--comm", comm,
                    "communication model: nccl (rendezvous, in-order streams, see --streams) or "
                    "eager (sends complete when posted)")
        ->check(CLI::IsMember({"nccl", "eager"}))
        ->capture_default_str();
    AddStreamsOption(cmd, streams);
    cmd->add_option("--cost", cost,
                    "per-action costs, e.g. F=1,B=2,I=1,W=1,FB=3 (defaults: those values)");
    cmd->add_option("--latency", latency, "per-message latency (default 0)");
    cmd->add_flag("--json", json, "print JSON");
  }
  CommModel Model() const { return *CommModelFromName(comm); }
  StreamLayout Streams() const { return StreamsFlag(streams); }
  std::optional<Costs> CostsGiven() const {
    if (cost.empty() && !latency) return std::nullopt;
    Costs c = ParseCosts(cost);
    if (latency) c.latency = *latency;
    return c;
  }
};

void AddVerify(CLI::App& app, Commands& commands) {
  auto input = std::make_shared<ScheduleInput>();
  auto flags = std::make_shared<ModelFlags>();
  auto no_z3 = std::make_shared<bool>(false);
  auto max_activations = std::make_shared<std::optional<int>>();
  auto svg = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "verify",
      "Check a schedule: structure, dependencies, matching, deadlock (simulation + Z3), memory, "
      "timing. Exit 0 when all pass, 1 when a check fails, 2 on bad input");
  AddScheduleInputOptions(cmd, *input);
  flags->Add(cmd);
  cmd->add_flag("--no-z3", *no_z3, "skip the Z3 proof of the deadlock verdict");
  cmd->add_option("--max-activations", *max_activations,
                  "memory bound per rank in stage-chunks (default: the generator kind's bound)");
  cmd->add_option("--svg", *svg,
                  "draw the timeline as SVG: a deadlock up to its stuck point, the cycle of blocked "
                  "actions highlighted; otherwise the timing simulation");
  commands.push_back({cmd, [=] {
                        VerifyOptions options;
                        options.model = flags->Model();
                        options.streams = flags->Streams();
                        options.use_z3 = !*no_z3;
                        options.max_activations = *max_activations;
                        options.costs = flags->CostsGiven();
                        const Schedule schedule = LoadSchedule(*input);
                        Progress progress("verify");
                        options.progress = progress.Callback();
                        const VerifyReport report = Verify(schedule, options);
                        progress.Finish();
                        if (!svg->empty()) {
                          SvgOptions picture;
                          picture.show_comm = !report.cycle.empty();
                          std::optional<TimelineView> view;
                          try {
                            Schedule titled = schedule;  // a file of unknown origin is titled by its name
                            if (titled.kind.empty()) titled.kind = std::filesystem::path(input->path).filename().string();
                            view = VerifiedView(titled, report);
                          } catch (const InputError& e) {  // nothing to draw; the report says why
                            std::cerr << "pipeproof: --svg " << *svg << " not written: " << e.message() << '\n';
                          }
                          if (view) WriteOutput(*svg, TimelineSvg(*view, picture));
                        }
                        std::cout << (flags->json ? report.Json() : report.Text());
                        return report.ok ? kExitOk : kExitCheckFailed;
                      }});
}

void AddSimulate(CLI::App& app, Commands& commands) {
  auto input = std::make_shared<ScheduleInput>();
  auto flags = std::make_shared<ModelFlags>();
  CLI::App* cmd = app.add_subcommand(
      "simulate", "Time a schedule: makespan, busy time and bubble per rank under given costs");
  AddScheduleInputOptions(cmd, *input);
  flags->Add(cmd);
  auto trace = std::make_shared<std::string>();
  cmd->add_option("--trace", *trace,
                  "write the simulated timeline as Chrome/Perfetto trace JSON (one cost unit = 1 ms)");
  commands.push_back({cmd, [=] {
                        const Costs costs = flags->CostsGiven().value_or(Costs{});
                        const Schedule schedule = LoadSchedule(*input);
                        const Timeline t =
                            Simulate(schedule, flags->Model(), costs, flags->Streams());
                        if (!trace->empty()) {
                          WriteOutput(*trace, PerfettoTrace(SimulatedView(
                                                  schedule, t, costs, flags->Model(), flags->Streams())));
                        }
                        std::cout << (flags->json ? TimingJson(t, costs, flags->Model(), flags->Streams())
                                                  : TimingText(t, costs, flags->Model(), flags->Streams()));
                        return t.complete ? kExitOk : kExitCheckFailed;
                      }});
}

}  // namespace

void AddVerifyCommands(CLI::App& app, Commands& commands) {
  AddVerify(app, commands);
  AddSimulate(app, commands);
}

}  // namespace pipeproof
