// render: a schedule's timeline as SVG or PNG, simulated or as a recorded run ran (issue 7;
// the pictures are render/'s, this file only reads flags and files).

#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/command.h"
#include "cli/exit_codes.h"
#include "render/svg_png.h"
#include "render/timeline_svg.h"
#include "render/timeline_view.h"
#include "schedule/lower.h"
#include "schedule/read_file.h"

namespace pipeproof {
namespace {

struct RenderFlags {
  ScheduleInput input;
  std::string output;
  CommFlags comm;
  std::string from_run;
  std::string pass = "train";
  bool show_comm = false;
  int width = 0;
  std::string diff;  // the original of a repaired FILE
};

// The recorded timeline a `pipeproof run --report` file carries, and what the run ran on.
RunTimeline TimelineFromReport(const std::string& path, std::string& transport) {
  // A report holds a timeline of every action: far below this unless something else was given.
  const std::string text = ReadFileBounded(path, int64_t{1} << 32, "run report");
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

int Render(const RenderFlags& f) {
  const ScheduleInput& input = f.input;
  Schedule schedule = LoadSchedule(input);
  // A file of unknown origin is titled by its name.
  if (schedule.kind.empty()) schedule.kind = std::filesystem::path(input.path).filename().string();
  TimelineView view;
  if (!f.diff.empty()) {
    ScheduleInput original = input;
    original.path = f.diff;
    view = DiffView(LoadSchedule(original), schedule, f.comm.Model(), f.comm.CostsGiven().value_or(Costs{}),
                    f.comm.Streams());
  } else if (!f.from_run.empty()) {
    std::string transport;
    const RunTimeline run = TimelineFromReport(f.from_run, transport);
    schedule = LowerIfComputeOnly(std::move(schedule));  // `run` lowers a compute-only schedule first
    view = RecordedView(schedule, run, f.pass == "both" ? "" : f.pass, transport);
  } else {
    view = ScheduleView(schedule, f.comm.Model(), f.comm.CostsGiven().value_or(Costs{}),
                        f.comm.Streams());
  }
  SvgOptions options;
  options.show_comm = f.show_comm || !view.stuck.empty() || !f.diff.empty();
  options.width = f.width;
  WritePicture(f.output, TimelineSvg(view, options));
  if (view.stuck.empty()) return kExitOk;
  // Exit 1 says why: the picture stops where the schedule does.
  std::cerr << fmt::format(
      "pipeproof: the schedule deadlocks ({} actions blocked); {} shows it up to the stuck point "
      "(pipeproof verify says what each waits for)\n",
      view.stuck.size(), f.output == "-" ? "the SVG" : f.output);
  return kExitCheckFailed;
}

void DeclareRender(CLI::App* cmd, RenderFlags& f) {
  AddScheduleInputOptions(cmd, f.input);
  cmd->add_option("-o,--output", f.output,
                  "the picture: OUT.svg, or OUT.png (through rsvg-convert); - for SVG on stdout")
      ->required();
  f.comm.Add(cmd);
  cmd->add_option("--from-run", f.from_run,
                  "draw the timeline recorded by pipeproof run --report REPORT (real times) "
                  "instead of simulating");
  cmd->add_option("--pass", f.pass, "with --from-run: the pass to draw")
      ->check(CLI::IsMember({"train", "inference", "both"}))
      ->capture_default_str();
  cmd->add_option("--diff", f.diff,
                  "ORIGINAL: draw FILE with the edits that turn ORIGINAL into it outlined (pipeproof "
                  "repair's output against its input: render --diff ORIGINAL REPAIRED -o OUT.svg)")
      ->excludes("--from-run");
  cmd->add_flag("--show-comm", f.show_comm,
                "draw SEND, RECV and WAIT as thin marks under each rank's cells");
  cmd->add_option("--width", f.width,
                  "width of the time axis in pixels (default: from the makespan)")
      ->check(IntegerIn(100, 100000));
}

}  // namespace

void AddRenderCommands(CLI::App& app, Commands& commands) {
  AddCommand<RenderFlags>(
      app, commands, "render",
      "Draw a schedule's timeline (ranks as rows, time left to right, one coloured cell per "
      "action) as SVG or PNG: simulated under given costs, or as a recorded run ran "
      "(--from-run). A deadlocked schedule is drawn up to the stuck point with its cycle of "
      "blocked actions (exit 1)",
      DeclareRender, Render);
}

}  // namespace pipeproof
