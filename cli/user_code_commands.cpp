// inject, trace check, trace show, diff: pipeproof on programs it did not write (DESIGN.md,
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
#include "verify/verify.h"

namespace pipeproof {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------- inject

void AddInject(CLI::App& app, Commands& commands) {
  auto f = std::make_shared<LaunchOptions>();
  CLI::App* cmd = app.add_subcommand("inject",
                                     "Run a program that uses NCCL under the interposer: its "
                                     "point-to-point calls follow a fault plan and are "
                                     "traced per rank (works through torchrun and mpirun: children "
                                     "inherit it). Exits with the program's status");
  cmd->add_option(
      "--plan", f->plan,
      "fault plan (JSON, as `pipeproof run --save-plan` writes): delays before the k-th "
      "ncclSend/ncclRecv of a rank, posting orders of its groups, a rank that stops dead");
  cmd->add_option("--trace-dir", f->trace_dir,
                  "where each rank's trace goes (emptied of old traces first)")
      ->capture_default_str();
  cmd->add_option("--delays", f->delays,
                  "auto: spin kernels on the call's stream where CUDA works, host sleeps "
                  "elsewhere; host; gpu")
      ->check(CLI::IsMember({"auto", "host", "gpu"}))
      ->capture_default_str();
  cmd->add_option("--library", f->library,
                  "the interposer (default: lib/libpipeproof_nccl.so next to bin/pipeproof)");
  cmd->add_flag("--quiet", f->quiet, "no notices from the interposer");
  cmd->add_option("COMMAND", f->command, "the program and its arguments, after --")->required();
  commands.push_back({cmd, [f] {
                        const LaunchResult r = LaunchWithInterposer(*f, std::cerr);
                        std::cerr << fmt::format(
                            "pipeproof inject: {} exited with status {}; {} rank traces in {} "
                            "(pipeproof trace check {})\n",
                            f->command.front(), r.status, r.traces, r.trace_dir, r.trace_dir);
                        return r.status;
                      }});
}

// ---------------------------------------------------------------- trace

struct DeadlockVerdict {
  bool ok = true;
  std::string text;
  nlohmann::json json;
};

// The verifier's deadlock check on the calls as a schedule, its cycle told in calls.
DeadlockVerdict CheckScheduleDeadlock(const std::vector<Trace>& traces, const TraceSchedule& ts,
                                      bool use_z3) {
  VerifyOptions options;
  options.model = CommModel::kNccl;
  options.use_z3 = use_z3;
  const VerifyReport report = Verify(ts.schedule, options);
  const CheckResult* check = report.Find("deadlock");
  DeadlockVerdict v;
  v.ok = check && check->ok();
  v.text = fmt::format(
      "deadlock (the calls as a schedule under the nccl model: rendezvous sends, one in-order "
      "stream per rank): {}\n",
      v.ok ? "none: this call order completes under every timing" : "this call order can deadlock");
  if (check) v.text += "  verifier: " + check->message + "\n";
  nlohmann::json cycle = nlohmann::json::array();
  for (size_t k = 0; k < report.cycle.size(); ++k) {
    const CycleStep& step = report.cycle[k];
    const CycleStep& next = report.cycle[(k + 1) % report.cycle.size()];
    const CallRef call = ts.origin[step.rank][step.index];
    const CallRef waits_for = ts.origin[next.rank][next.index];
    const std::string what =
        call.valid() ? DescribeCall(traces, call)
                     : fmt::format("rank {} action {} ({})", step.rank, step.index, step.action);
    const std::string whom = waits_for.valid()
                                 ? DescribeCall(traces, waits_for)
                                 : fmt::format("rank {} action {}", next.rank, next.index);
    if (report.cycle.size() == 1) {
      v.text += fmt::format("  {}\n    never completes: {}\n", what, step.waits_for);
    } else {
      v.text += fmt::format("  {}{}\n    waits for {}\n", what,
                            step.action == "WAIT" ? " and the rest of its group" : "", whom);
    }
    cycle.push_back({{"rank", step.rank},
                     {"call", call.valid() ? nlohmann::json(call.index) : nlohmann::json(nullptr)},
                     {"action", step.action},
                     {"waits_for", step.waits_for}});
  }
  for (const std::string& n : ts.notes) v.text += "  note: " + n + "\n";
  v.json = {{"ok", v.ok},
            {"message", check ? check->message : ""},
            {"cycle", cycle},
            {"notes", ts.notes}};
  return v;
}

void AddTraceCheck(CLI::App* trace, Commands& commands) {
  struct Flags {
    std::string dir;
    bool deadlock = false;
    bool no_z3 = false;
    std::string schedule_out;
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* cmd = trace->add_subcommand("check",
                                        "Check the traces of one run: sends and receives pair up "
                                        "in count and type, and where the run hung, "
                                        "which rank waits on which call and where the ranks' "
                                        "orders diverge. Exit 0 clean, 1 a problem, 2 bad input");
  cmd->add_option("DIR", f->dir, "the --trace-dir of `pipeproof inject`")->required();
  cmd->add_flag(
      "--deadlock", f->deadlock,
      "also turn the calls into a schedule and run the verifier's deadlock check (nccl model): can "
      "this call order deadlock under some timing, even if this run did not?");
  cmd->add_flag("--no-z3", f->no_z3, "with --deadlock: skip the Z3 proof of the verdict");
  cmd->add_option("--schedule-out", f->schedule_out,
                  "write the calls as a pipeproof schedule (.pps)");
  cmd->add_flag("--json", f->json, "print JSON");
  commands.push_back({cmd, [f] {
                        const std::vector<Trace> traces = ReadTraceDirectory(f->dir);
                        const TraceCheckReport report = CheckTraces(traces);
                        std::optional<DeadlockVerdict> deadlock;
                        if (f->deadlock || !f->schedule_out.empty()) {
                          const TraceSchedule ts = ScheduleFromTraces(traces);
                          if (!f->schedule_out.empty())
                            WriteOutput(f->schedule_out, WriteSchedule(ts.schedule, Format::kPps));
                          if (f->deadlock) deadlock = CheckScheduleDeadlock(traces, ts, !f->no_z3);
                        }
                        const bool ok = report.ok() && (!deadlock || deadlock->ok);
                        if (f->json) {
                          nlohmann::json j = nlohmann::json::parse(report.Json());
                          j["ok"] = ok;
                          if (deadlock) j["deadlock"] = deadlock->json;
                          std::cout << j.dump(2) << '\n';
                        } else {
                          std::cout << report.Text();
                          if (deadlock) std::cout << deadlock->text;
                        }
                        return ok ? kExitOk : kExitCheckFailed;
                      }});
}

std::string ShowTrace(const Trace& t) {
  std::string out = fmt::format(
      "{}: rank {}, pid {} on {}, {} communicators, {} calls{}\n", t.path, t.rank(), t.header.pid,
      t.host(), t.comms.size(), t.calls.size(),
      t.ended_on_signal()
          ? fmt::format(", written when signal {} ended the process", t.header.end_signal)
          : "");
  for (size_t i = 0; i < t.comms.size(); ++i) {
    const TraceComm& c = t.comms[i];
    out += fmt::format("  communicator #{}: id {:#018x}, rank {} of {}, {}{}{}\n", i, c.id, c.rank,
                       c.nranks, CommOriginName(static_cast<CommOrigin>(c.origin)),
                       c.parent_id ? fmt::format(" of {:#018x}", c.parent_id) : "",
                       c.flags & kCommDestroyed ? ", destroyed"
                       : c.flags & kCommAborted ? ", aborted"
                                                : "");
  }
  for (size_t i = 0; i < t.calls.size(); ++i) {
    const TraceCall& c = t.calls[i];
    const bool send = c.kind == static_cast<uint8_t>(CallKind::kSend);
    std::string state = c.flags & kCallStopped ? "stopped dead before it"
                        : c.flags & kCallCompleted
                            ? fmt::format("completed at {:.6f} s", c.t_complete / 1e9)
                        : c.flags & kCallPosted ? "posted, never completed"
                                                : "never posted";
    if (c.flags & kCallError) state += fmt::format(", NCCL error {}", c.result);
    out += fmt::format(
        "  #{} {:.6f} s {} #{}.{}{}: {} {} x {} {} rank {} (comm #{}, stream {:#x}){}: {}\n", i,
        c.t_call / 1e9, c.flags & kCallInGroup ? "group" : "unit", c.unit, c.index_in_unit,
        c.flags & kCallShuffled ? fmt::format(" posted as #{}", c.posted_as) : "",
        send ? "send" : "recv", c.count, NcclDataTypeName(c.dtype), send ? "to" : "from", c.peer,
        c.comm, c.stream,
        c.delay_us ? fmt::format(", delayed {} us{}", c.delay_us,
                                 c.flags & kCallGpuDelay ? " on the GPU" : "")
                   : "",
        state);
  }
  return out;
}

void AddTraceShow(CLI::App* trace, Commands& commands) {
  auto path = std::make_shared<std::string>();
  CLI::App* cmd =
      trace->add_subcommand("show", "Print a trace (or every trace in a directory) call by call");
  cmd->add_option("PATH", *path, "a .pptrace file or a trace directory")->required();
  commands.push_back({cmd, [path] {
                        std::error_code ec;
                        const std::vector<Trace> traces =
                            fs::is_directory(*path, ec) ? ReadTraceDirectory(*path)
                                                        : std::vector<Trace>{ReadTrace(*path)};
                        for (const Trace& t : traces) std::cout << ShowTrace(t);
                        return kExitOk;
                      }});
}

// ---------------------------------------------------------------- diff

// The diff as render/'s HTML mismatch report: the table, and a heatmap per differing tensor.
std::string DiffHtml(const TensorDiff& diff, const std::vector<ErrorHeatmap>& heatmaps) {
  HtmlReportContext context;
  context.title = "pipeproof diff";
  const int64_t bad = diff.report.MismatchingTensors();
  context.headline =
      bad ? fmt::format("MISMATCH: {} of {} tensors differ (exit 1)", bad,
                        diff.report.tensors.size())
          : fmt::format("MATCH: all {} tensors agree (exit 0)", diff.report.tensors.size());
  context.facts = {{"A (reference)", fmt::format("{}: {} tensors", diff.a_path, diff.a_tensors)},
                   {"B (run)", fmt::format("{}: {} tensors", diff.b_path, diff.b_tensors)},
                   {"comparison", diff.report.policy.Describe()}};
  for (const std::string& n : diff.notes) context.details += n + "\n";
  return MismatchHtml(diff.report, heatmaps, context);
}

void AddDiff(CLI::App& app, Commands& commands) {
  struct Flags {
    std::string a, b;
    bool exact = false;
    std::optional<double> rtol, atol;
    std::vector<std::string> maps;
    std::string json, html;
    int max_lines = 20;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand("diff",
                                     "Compare two tensor dumps (safetensors or .npy; files or "
                                     "directories) tensor by tensor: max abs and rel "
                                     "error, cosine measure, ULP, mismatch count and first index. "
                                     "Exit 0 all match, 1 a mismatch, 2 bad input");
  cmd->add_option("A", f->a, "the reference dump (e.g. a single-device run)")->required();
  cmd->add_option("B", f->b, "the dump under test (e.g. the pipelined run)")->required();
  cmd->add_flag("--exact", f->exact, "every element bit for bit (default: per-type tolerances)");
  cmd->add_option("--rtol", f->rtol, "relative tolerance for every float type");
  cmd->add_option("--atol", f->atol,
                  "absolute tolerance, as a fraction of the tensor's largest |A|");
  cmd->add_option("--map", f->maps,
                  "OLD=NEW: A's tensor OLD is B's NEW; OLD*=NEW* for a prefix (repeatable)");
  cmd->add_option("--json", f->json, "also write the report as JSON to this file (- for stdout)");
  cmd->add_option("--html", f->html, "also write the report as an HTML page to this file");
  cmd->add_option("--max-lines", f->max_lines, "mismatching tensors listed in the text")
      ->capture_default_str();
  commands.push_back({cmd, [f] {
                        DiffOptions options;
                        options.exact = f->exact;
                        options.rtol = f->rtol;
                        options.atol = f->atol;
                        if (f->exact && (f->rtol || f->atol))
                          throw InputError("--exact and --rtol/--atol exclude each other");
                        for (const std::string& m : f->maps)
                          options.renames.push_back(ParseRename(m));
                        std::vector<ErrorHeatmap> heatmaps;
                        const auto heatmap = [&](const TensorComparison& c, const HostTensor& run,
                                                 const HostTensor& ref,
                                                 const ComparePolicy& policy) {
                          if (!f->html.empty() && !c.ok())
                            heatmaps.push_back(ComputeHeatmap(c.name, run, ref, policy));
                        };
                        const TensorDiff diff = DiffTensors(ReadTensorDump(f->a),
                                                            ReadTensorDump(f->b), options, heatmap);
                        if (f->json != "-") std::cout << diff.Text(f->max_lines);
                        if (!f->json.empty()) WriteOutput(f->json, diff.Json());
                        if (!f->html.empty()) WriteOutput(f->html, DiffHtml(diff, heatmaps));
                        return diff.ok() ? kExitOk : kExitCheckFailed;
                      }});
}

}  // namespace

void AddUserCodeCommands(CLI::App& app, Commands& commands) {
  AddInject(app, commands);
  CLI::App* trace = app.add_subcommand("trace", "Read the NCCL traces `pipeproof inject` records");
  trace->require_subcommand(1);
  AddTraceCheck(trace, commands);
  AddTraceShow(trace, commands);
  AddDiff(app, commands);
}

}  // namespace pipeproof
