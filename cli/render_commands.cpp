// render: a schedule's timeline as SVG or PNG, simulated or as a recorded run ran (issue 7;
// the pictures are render/'s, this file only reads flags and files).

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "cli/command.h"
#include "cli/exit_codes.h"
#include "render/svg_png.h"
#include "render/timeline_svg.h"
#include "render/timeline_view.h"
#include "schedule/lower.h"

namespace pipeproof {
namespace {

struct RenderFlags {
  std::string output;
  std::string comm = "nccl";
  std::string streams = "rank";
  std::string cost;
  std::optional<double> latency;
  std::string from_run;
  std::string pass = "train";
  bool show_comm = false;
  int width = 0;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError::At(path, 0, 0, "cannot read the file");
  std::ostringstream all;
  all << in.rdbuf();
  return all.str();
}

// The recorded timeline a `pipeproof run --report` file carries, and what the run ran on.
RunTimeline TimelineFromReport(const std::string& path, std::string& transport) {
  const std::string text = ReadFile(path);
  try {
    return RunTimelineFromReport(text, &transport);
  } catch (const std::runtime_error& e) {
    throw InputError::At(path, 0, 0, e.what());
  }
}

// Writes the SVG, or a PNG made from it; by the output's extension.
void WritePicture(const std::string& path, const std::string& svg) {
  const std::string ext = std::filesystem::path(path).extension().string();
  if (path == "-" || ext == ".svg") {
    WriteOutput(path, svg);
  } else if (ext == ".png") {
    WritePng(svg, path);
  } else {
    throw InputError(fmt::format("-o {}: the picture is written as .svg or .png", path));
  }
}

int Render(const ScheduleInput& input, const RenderFlags& f) {
  Schedule schedule = LoadSchedule(input);
  // A file of unknown origin is titled by its name.
  if (schedule.kind.empty()) schedule.kind = std::filesystem::path(input.path).filename().string();
  TimelineView view;
  if (!f.from_run.empty()) {
    std::string transport;
    const RunTimeline run = TimelineFromReport(f.from_run, transport);
    if (!HasComm(schedule)) {  // `run` lowers a compute-only schedule first; draw what it ran
      LoweringResult lowered = Lower(schedule);
      if (lowered.schedule) schedule = std::move(*lowered.schedule);
    }
    view = RecordedView(schedule, run, f.pass == "both" ? "" : f.pass, transport);
  } else {
    Costs costs = ParseCosts(f.cost);
    if (f.latency) costs.latency = *f.latency;
    view = ScheduleView(schedule, *CommModelFromName(f.comm), costs, StreamsFlag(f.streams));
  }
  SvgOptions options;
  options.show_comm = f.show_comm || !view.stuck.empty();
  options.width = f.width;
  WritePicture(f.output, TimelineSvg(view, options));
  return view.stuck.empty() ? kExitOk : kExitCheckFailed;
}

}  // namespace

void AddRenderCommands(CLI::App& app, Commands& commands) {
  auto input = std::make_shared<ScheduleInput>();
  auto flags = std::make_shared<RenderFlags>();
  CLI::App* cmd = app.add_subcommand(
      "render",
      "Draw a schedule's timeline (ranks as rows, time left to right, one coloured cell per "
      "action) as "
      "SVG or PNG: simulated under given costs, or as a recorded run ran (--from-run). A "
      "deadlocked "
      "schedule is drawn up to the stuck point with its cycle of blocked actions (exit 1)");
  AddScheduleInputOptions(cmd, *input);
  cmd->add_option("-o,--output", flags->output,
                  "the picture: OUT.svg, or OUT.png (through rsvg-convert); - for SVG on stdout")
      ->required();
  cmd->add_option("--comm", flags->comm, "communication model of the simulation")
      ->check(CLI::IsMember({"nccl", "eager"}))
      ->capture_default_str();
  AddStreamsOption(cmd, flags->streams);
  cmd->add_option("--cost", flags->cost,
                  "per-action costs, e.g. F=1,B=2,I=1,W=1,FB=3 (defaults: those values)");
  cmd->add_option("--latency", flags->latency, "per-message latency (default 0)");
  cmd->add_option("--from-run", flags->from_run,
                  "draw the timeline recorded by pipeproof run --report REPORT (real times) "
                  "instead of simulating");
  cmd->add_option("--pass", flags->pass, "with --from-run: the pass to draw")
      ->check(CLI::IsMember({"train", "inference", "both"}))
      ->capture_default_str();
  cmd->add_flag("--show-comm", flags->show_comm,
                "draw SEND, RECV and WAIT as thin marks under each rank's cells");
  cmd->add_option("--width", flags->width,
                  "width of the time axis in pixels (default: from the makespan)")
      ->check(CLI::Range(100, 100000));
  commands.push_back({cmd, [=] { return Render(*input, *flags); }});
}

}  // namespace pipeproof
