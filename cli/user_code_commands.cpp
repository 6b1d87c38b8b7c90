// inject, trace check, trace show, diff: pipeproof on programs it did not write (docs/design.md,
// "Users' own code").
//   pipeproof inject [--plan PLAN] [--trace-dir DIR] [--delays auto|host|gpu] -- COMMAND...
//   pipeproof trace check DIR [--deadlock] [--no-z3] [--schedule-out FILE] [--json]
//   pipeproof trace show FILE|DIR
//   pipeproof diff A B [--exact] [--rtol R] [--atol A] [--map OLD=NEW]... [--json FILE] [--html
//   FILE]

#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/exit_codes.h"
#include "reference/tensor_diff.h"
#include "reference/tensor_files.h"
#include "render/html_report.h"
#include "usercode/launcher.h"
#include "usercode/nccl_trace.h"
#include "usercode/trace_check.h"

namespace pipeproof {
namespace {

// ---------------------------------------------------------------- inject

void DeclareInject(CLI::App* cmd, LaunchOptions& f) {
  cmd->add_option(
      "--plan", f.plan,
      "fault plan (JSON, as `pipeproof run --save-plan` writes): delays before the k-th "
      "ncclSend/ncclRecv of a rank, posting orders of its groups, a rank that stops dead");
  cmd->add_option("--trace-dir", f.trace_dir,
                  "where each rank's trace goes (emptied of old traces first)")
      ->capture_default_str();
  cmd->add_option("--delays", f.delays,
                  "auto: spin kernels on the call's stream where CUDA works, host sleeps "
                  "elsewhere; host; gpu")
      ->check(CLI::IsMember({"auto", "host", "gpu"}))
      ->capture_default_str();
  cmd->add_option("--library", f.library,
                  "the interposer (default: lib/libpipeproof_nccl.so next to bin/pipeproof)");
  cmd->add_flag("--quiet", f.quiet, "no notices from the interposer");
  cmd->add_option("COMMAND", f.command, "the program and its arguments, after --")->required();
}

int RunInject(const LaunchOptions& f) {
  const LaunchResult r = LaunchWithInterposer(f, std::cerr);
  std::cerr << fmt::format(
      "pipeproof inject: {} exited with status {}; {} rank traces in {} (pipeproof trace check "
      "{})\n",
      f.command.front(), r.status, r.traces, r.trace_dir, r.trace_dir);
  return r.status;
}

// ---------------------------------------------------------------- trace

struct TraceCheckFlags {
  std::string dir;
  bool deadlock = false;
  bool no_z3 = false;
  std::string schedule_out;
  bool json = false;
};

void DeclareTraceCheck(CLI::App* cmd, TraceCheckFlags& f) {
  cmd->add_option("DIR", f.dir, "the --trace-dir of `pipeproof inject`")->required();
  cmd->add_flag(
      "--deadlock", f.deadlock,
      "also turn the calls into a schedule and run the verifier's deadlock check (nccl model): can "
      "this call order deadlock under some timing, even if this run did not?");
  cmd->add_flag("--no-z3", f.no_z3, "with --deadlock: skip the Z3 proof of the verdict");
  cmd->add_option("--schedule-out", f.schedule_out,
                  "write the calls as a pipeproof schedule (.pps)");
  cmd->add_flag("--json", f.json, "print JSON");
}

int RunTraceCheck(const TraceCheckFlags& f) {
  const std::vector<Trace> traces = ReadTraceDirectory(f.dir);
  const TraceCheckReport report = CheckTraces(traces);
  std::optional<TraceDeadlockVerdict> deadlock;
  if (f.deadlock || !f.schedule_out.empty()) {
    const TraceSchedule ts = ScheduleFromTraces(traces);
    if (!f.schedule_out.empty()) WriteOutput(f.schedule_out, WriteSchedule(ts.schedule, Format::kPps));
    if (f.deadlock) deadlock = CheckTraceDeadlock(traces, ts, !f.no_z3);
  }
  const bool ok = report.ok() && (!deadlock || deadlock->ok);
  if (f.json) {
    nlohmann::json j = nlohmann::json::parse(report.Json());
    j["ok"] = ok;
    if (deadlock) j["deadlock"] = nlohmann::json::parse(deadlock->json);
    std::cout << j.dump(2) << '\n';
  } else {
    std::cout << report.Text();
    if (deadlock) std::cout << deadlock->text;
  }
  return ok ? kExitOk : kExitCheckFailed;
}

struct TraceShowFlags {
  std::string path;
};

void DeclareTraceShow(CLI::App* cmd, TraceShowFlags& f) {
  cmd->add_option("PATH", f.path, "a .pptrace file or a trace directory")->required();
}

int RunTraceShow(const TraceShowFlags& f) {
  std::error_code ec;
  const std::vector<Trace> traces = std::filesystem::is_directory(f.path, ec)
                                        ? ReadTraceDirectory(f.path)
                                        : std::vector<Trace>{ReadTrace(f.path)};
  for (const Trace& t : traces) std::cout << FormatTrace(t);
  return kExitOk;
}

// ---------------------------------------------------------------- diff

struct DiffFlags {
  std::string a, b;
  bool exact = false;
  std::optional<double> rtol, atol;
  std::vector<std::string> maps;
  std::string json, html;
  int max_lines = 20;
};

void DeclareDiff(CLI::App* cmd, DiffFlags& f) {
  cmd->add_option("A", f.a, "the reference dump (e.g. a single-device run)")->required();
  cmd->add_option("B", f.b, "the dump under test (e.g. the pipelined run)")->required();
  cmd->add_flag("--exact", f.exact, "every element bit for bit (default: per-type tolerances)");
  cmd->add_option("--rtol", f.rtol, "relative tolerance for every float type")
      ->check(NonNegativeFinite());
  cmd->add_option("--atol", f.atol,
                  "absolute tolerance, as a fraction of the tensor's largest |A|")
      ->check(NonNegativeFinite());
  cmd->add_option("--map", f.maps,
                  "OLD=NEW: A's tensor OLD is B's NEW; OLD*=NEW* for a prefix (repeatable)");
  cmd->add_option("--json", f.json, "also write the report as JSON to this file (- for stdout)");
  cmd->add_option("--html", f.html, "also write the report as an HTML page to this file");
  cmd->add_option("--max-lines", f.max_lines, "mismatching tensors listed in the text")
      ->check(IntegerIn(0, 1000000))
      ->capture_default_str();
}

int RunDiff(const DiffFlags& f) {
  DiffOptions options;
  options.exact = f.exact;
  options.rtol = f.rtol;
  options.atol = f.atol;
  if (f.exact && (f.rtol || f.atol)) throw InputError("--exact and --rtol/--atol exclude each other");
  for (const std::string& m : f.maps) options.renames.push_back(ParseRename(m));
  std::vector<ErrorHeatmap> heatmaps;
  const auto heatmap = [&](const TensorComparison& c, const HostTensor& run, const HostTensor& ref,
                           const ComparePolicy& policy) {
    if (!f.html.empty() && !c.ok()) heatmaps.push_back(ComputeHeatmap(c.name, run, ref, policy));
  };
  const TensorDump a = ReadTensorDump(f.a);  // A first: its errors come first
  const TensorDump b = ReadTensorDump(f.b);
  const TensorDiff diff = DiffTensors(a, b, options, heatmap);
  if (f.json != "-") std::cout << diff.Text(f.max_lines);
  if (!f.json.empty()) WriteOutput(f.json, diff.Json());
  if (!f.html.empty()) WriteOutput(f.html, DiffHtml(diff, heatmaps));
  return diff.ok() ? kExitOk : kExitCheckFailed;
}

}  // namespace

void AddUserCodeCommands(CLI::App& app, Commands& commands) {
  AddCommand<LaunchOptions>(
      app, commands, "inject",
      "Run a program that uses NCCL under the interposer: its point-to-point calls follow a fault "
      "plan and are traced per rank (works through torchrun and mpirun: children inherit it). "
      "Exits with the program's status",
      DeclareInject, RunInject);
  CLI::App* trace = app.add_subcommand("trace", "Read the NCCL traces `pipeproof inject` records");
  trace->require_subcommand(1);
  AddCommand<TraceCheckFlags>(
      *trace, commands, "check",
      "Check the traces of one run: sends and receives pair up in count and type, and where the "
      "run hung, which rank waits on which call and where the ranks' orders diverge. Exit 0 "
      "clean, 1 a problem, 2 bad input",
      DeclareTraceCheck, RunTraceCheck);
  AddCommand<TraceShowFlags>(*trace, commands, "show",
                             "Print a trace (or every trace in a directory) call by call",
                             DeclareTraceShow, RunTraceShow);
  AddCommand<DiffFlags>(
      app, commands, "diff",
      "Compare two tensor dumps (safetensors or .npy; files or directories) tensor by tensor: max "
      "abs and rel error, cosine measure, ULP, mismatch count and first index. Exit 0 all match, "
      "1 a mismatch, 2 bad input",
      DeclareDiff, RunDiff);
}

}  // namespace pipeproof
