// run: verify a schedule, execute it on real ranks under injected faults, compare with the
// sequential reference (DESIGN.md, "Execution and the reference"). Exit 0 match, 1 mismatch (a
// caught bitflip or swap included), 2 bad input or a schedule that fails verification, 3 hang,
// dead rank or another runtime fault (a caught drop or kill included).

#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

#include <unistd.h>

#include "cli/command.h"
#include "cli/device_flags.h"
#include "cli/exit_codes.h"
#include "exec/fault_draw.h"
#include "exec/mpi_world.h"
#include "exec/memory_budget.h"
#include "exec/run.h"
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
  // The schedule: a file, or a generator.
  std::string path;
  std::string from;
  std::string kind;
  std::optional<int> ranks;
  std::optional<int> microbatches;
  std::optional<int> stages;
  std::string placement;
  int virtual_stages = 2;
  bool no_overlap = false;
  bool wait_sends = false;
  bool allow_deadlock = false;
  bool legacy_bw = false;
  bool no_z3 = false;
  // The model.
  int hidden = ModelShape{}.hidden;
  int seq = ModelShape{}.seq;
  int micro_batch_size = ModelShape{}.micro_batch_size;
  std::string dtype = "f64";
  uint64_t model_seed = 0;
  // Comparison.
  bool exact = false;
  bool tolerance = false;
  std::optional<double> rtol;
  std::optional<double> atol;
  // Execution.
  std::string device = "cpu";
  std::string transport = "threads";
  std::string streams = "rank";
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

void AddFlags(CLI::App* cmd, RunFlags& f) {
  cmd->add_option("FILE", f.path, "schedule file (.pps, .csv, .json); or generate one with --kind");
  cmd->add_option("--kind", f.kind,
                  "generate this kind of schedule (with --ranks and --microbatches); with FILE: take "
                  "a headerless file's topology from it")
      ->check(CLI::IsMember(GeneratorKinds()));
  cmd->add_option("-r,--ranks", f.ranks, "ranks of the generated schedule");
  cmd->add_option("-m,--microbatches", f.microbatches, "microbatches (generated, or of a headerless file)");
  cmd->add_option("--virtual-stages", f.virtual_stages, "interleaved-1f1b: stages per rank")->capture_default_str();
  cmd->add_flag("--no-overlap", f.no_overlap, "dualpipe/dualpipev: F then B instead of OVERLAP_F_B");
  cmd->add_flag("--wait-sends", f.wait_sends,
                "with --kind (a lowered kind): a WAIT_SEND for every SEND where PyTorch's runtime "
                "puts it");
  cmd->add_flag("--allow-deadlock", f.allow_deadlock,
                "run a schedule that fails only the deadlock check, to see it hang on real ranks "
                "(the watchdog stops it: exit 3)");
  cmd->add_option("--from", f.from, "input format, default: from the file name or content")
      ->check(CLI::IsMember({"pps", "csv", "json"}));
  cmd->add_option("--stages", f.stages, "headerless file: number of stages");
  cmd->add_option("--placement", f.placement, "headerless file: loop, v or a comma list");
  cmd->add_flag("--legacy-bw", f.legacy_bw, "read PyTorch's legacy BW spellings");
  cmd->add_flag("--no-z3", f.no_z3, "verify without the Z3 proof of the deadlock verdict");

  cmd->add_option("--hidden", f.hidden, "hidden size H of the stage model")->capture_default_str();
  cmd->add_option("--seq", f.seq, "sequence length L")->capture_default_str();
  cmd->add_option("--micro-batch-size", f.micro_batch_size, "micro-batch size b")->capture_default_str();
  cmd->add_option("--dtype", f.dtype, "element type (cpu: f64, f32; cuda: f32, bf16)")
      ->check(CLI::IsMember({"f64", "f32", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--model-seed", f.model_seed, "seed of the weights and the data")->capture_default_str();

  cmd->add_flag("--exact", f.exact, "results must equal the reference bit for bit (the default)");
  cmd->add_flag("--tolerance", f.tolerance,
                "results must be close to a plain microbatch-order reference: |run - ref| <= rtol "
                "|ref| + atol max|ref| (defaults: f64 rtol 1e-9 atol 1e-12, f32 rtol 1e-4 atol 1e-5)");
  cmd->add_option("--rtol", f.rtol, "relative tolerance (with --tolerance)");
  cmd->add_option("--atol", f.atol, "absolute tolerance, as a fraction of the tensor's largest reference value (with --tolerance)");

  cmd->add_option("--device", f.device,
                  "where every rank and the sequential reference compute: cpu, or cuda (one GPU; "
                  "the ranks are threads whose messages are device copies: the streams transport)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--transport", f.transport,
                  "threads: ranks as threads of this process (with --device cuda: streams, on one "
                  "GPU); mpi: one rank per process, under mpirun -np RANKS; nccl (with --device "
                  "cuda): one GPU per rank, ranks as processes under mpirun -np RANKS or else as "
                  "threads")
      ->check(CLI::IsMember({"threads", "streams", "mpi", "nccl"}))
      ->capture_default_str();
  AddStreamsOption(cmd, f.streams);
  cmd->add_option("--timeout", f.timeout, "seconds without progress before a hang is declared")
      ->check(CLI::Range(0.01, 86400.0))
      ->capture_default_str();
  cmd->add_option("--flight-tail", f.flight_tail, "events per rank in a hang's dump")->capture_default_str();

  cmd->add_option("--delay", f.delay,
                  "random delays: uniform|exponential|heavy[:MEAN], e.g. exp:100us (before posting, "
                  "before delivery and before compute)");
  cmd->add_option("--delay-at", f.delay_at, "where delays go: any of post,deliver,compute");
  cmd->add_option("--seed", f.seed, "seed of the fault plan")->capture_default_str();
  cmd->add_option("--straggler", f.stragglers, "slow a rank's computes: RANK:FACTOR (repeatable)");
  cmd->add_flag("--shuffle", f.shuffle, "shuffle the posting order inside each unit (legal: keeps each rank pair's order)");
  cmd->add_flag("--poison", f.poison, "fill every freed buffer with NaN");
  cmd->add_option("--corrupt", f.corrupt, "negative control: bitflip, swap or drop one message (must be caught)")
      ->check(CLI::IsMember({"bitflip", "swap", "drop"}));
  cmd->add_option("--kill-rank", f.kill_rank, "negative control: this rank stops dead at a random action");
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
  if (!f.path.empty()) {
    if (f.ranks) throw InputError("--ranks generates a schedule; it cannot go with a schedule FILE");
    ScheduleInput input;
    input.path = f.path;
    input.from = f.from;
    input.topology.kind = f.kind;
    input.topology.stages = f.stages;
    input.topology.microbatches = f.microbatches;
    input.topology.legacy_bw = f.legacy_bw;
    input.placement = f.placement;
    schedule = LoadSchedule(input);
    name = fmt::format("{} ({}{} ranks, {} stages, {} microbatches)", f.path,
                       schedule.kind.empty() ? "" : schedule.kind + ", ", schedule.ranks, schedule.stages,
                       schedule.microbatches);
  } else {
    if (f.kind.empty() || !f.ranks || !f.microbatches) {
      throw InputError("run needs a schedule: a FILE, or --kind KIND --ranks R --microbatches M");
    }
    GenerateOptions g;
    g.kind = f.kind;
    g.ranks = *f.ranks;
    g.microbatches = *f.microbatches;
    g.virtual_stages = f.virtual_stages;
    g.overlap = !f.no_overlap;
    g.wait_sends = f.wait_sends;
    schedule = Generate(g);
    name = fmt::format("{}, {} ranks, {} stages, {} microbatches", f.kind, schedule.ranks, schedule.stages,
                       schedule.microbatches);
  }
  if (!HasComm(schedule)) {
    LoweringResult lowered = Lower(schedule);
    if (!lowered.schedule) throw InputError("the compute-only schedule cannot be lowered: " + lowered.problem);
    schedule = std::move(*lowered.schedule);
    name += ", SEND/RECV inserted by lowering";
  }
  return schedule;
}

ModelConfig ModelFrom(const RunFlags& f) {
  ModelConfig model;
  model.shape = {f.hidden, f.seq, f.micro_batch_size};
  model.dtype = *DTypeFromName(f.dtype);
  model.seed = f.model_seed;
  CheckModelConfig(model);
  return model;
}

ComparePolicy PolicyFrom(const RunFlags& f, DType dtype) {
  if (f.exact && f.tolerance) throw InputError("--exact and --tolerance exclude each other");
  if ((f.rtol || f.atol) && !f.tolerance) throw InputError("--rtol and --atol go with --tolerance");
  if (!f.tolerance) return ComparePolicy::Exact();
  ComparePolicy p = ComparePolicy::Tolerance(dtype);
  if (f.rtol) p.rtol = *f.rtol;
  if (f.atol) p.atol = *f.atol;
  if (p.rtol < 0 || p.atol < 0) throw InputError("--rtol and --atol must not be negative");
  return p;
}

bool DrawFlagsGiven(const RunFlags& f) {
  return !f.delay.empty() || !f.delay_at.empty() || !f.stragglers.empty() || f.shuffle || f.poison ||
         !f.corrupt.empty() || f.kill_rank;
}

FaultPlan PlanFrom(const RunFlags& f, const Schedule& schedule, const ModelConfig& model, const std::string& name) {
  if (!f.replay.empty()) {
    if (DrawFlagsGiven(f)) {
      throw InputError("--replay takes every fault from the plan; drop --delay, --straggler, --shuffle, "
                       "--poison, --corrupt and --kill-rank");
    }
    return ReadFaultPlan(f.replay);
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
  const int mantissa = model.dtype == DType::kF64 ? 52 : model.dtype == DType::kF32 ? 23 : 7;
  return DrawFaultPlan(PlanRun(schedule), o,
                       {int64_t{model.shape.Rows()} * model.shape.hidden, mantissa}, name);
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
  if (failed && f.replay.empty() && !plan.Empty()) {
    std::string path = f.save_plan;
    if (path.empty()) {
      path = (std::filesystem::temp_directory_path() / fmt::format("pipeproof-plan-{}-{}.json", f.seed, ::getpid())).string();
      WriteOutput(path, plan.Json());
    }
    out << fmt::format("replay these faults exactly: the same command without the fault flags, plus --replay {}\n", path);
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

// Whether the deadlock check is the only one that failed: the schedule is well formed, so it can
// run, and it hangs.
bool OnlyDeadlockFails(const VerifyReport& report) {
  for (const CheckResult& c : report.checks) {
    if (!c.ok() && c.name != "deadlock") return false;
  }
  return true;
}

std::unique_ptr<World> MakeWorld(const RunFlags& f) {
  if (f.transport == "mpi") return MakeMpiWorld();
  if (f.transport == "nccl") return NcclWorld();
  if (auto make = ThreadWorldFor(f.device)) return make();
  return MakeThreadWorld();
}

int Run(const RunFlags& f) {
  CheckStreamsFitTransport(StreamsFlag(f.streams), f.transport);
  CheckDeviceFlags(f.device, f.dtype, f.transport);
  std::unique_ptr<World> world = MakeWorld(f);
  const bool leader = world->leader();
  try {
    std::string name;
    const Schedule schedule = ScheduleFrom(f, name);
    // A live line while verifying and running long work (nothing for short work or with -q);
    // finished before anything else is printed.
    ProgressOptions progress_options;
    if (f.quiet || !leader) progress_options.mode = ProgressMode::kOff;
    Progress progress("run", progress_options);
    VerifyOptions verify;
    verify.model = CommModel::kNccl;  // what the executor does
    verify.streams = StreamsFlag(f.streams);
    verify.use_z3 = !f.no_z3;
    verify.progress = progress.Callback();
    const VerifyReport report = Verify(schedule, verify);
    if (!report.ok && !(f.allow_deadlock && OnlyDeadlockFails(report))) {
      progress.Finish();
      if (leader) {
        std::cerr << report.Text();
        std::cerr << "pipeproof: error: the schedule fails verification; run refuses to execute it\n";
      }
      return kExitBadInput;
    }
    if (!report.ok && leader) {
      progress.Finish();
      std::cerr << "pipeproof: the schedule deadlocks (" << report.Find("deadlock")->message
                << "); running it anyway (--allow-deadlock): the watchdog stops the hang\n";
    }
    RunOptions options;
    options.streams = StreamsFlag(f.streams);
    options.exec.model = ModelFrom(f);
    if (f.device == "cpu") {
      CheckRunFitsInMemory(EstimateRunMemory(schedule, options.exec.model, report.memory.peak,
                                             report.memory.stash_peak, f.transport != "mpi"),
                           options.exec.model);
    }
    // Every rank and the reference on the same kind of device: exact mode compares like kernels.
    options.exec.make_device = DeviceFactoryFor(f.device, options.exec.model.dtype, f.transport);
    options.exec.flight_capacity = std::max<size_t>(f.flight_tail, 16);
    options.exec.record_timeline = !f.report.empty() || !f.trace.empty();
    options.progress = progress.Callback();
    options.watchdog.progress = progress.Callback();
    options.policy = PolicyFrom(f, options.exec.model.dtype);
    options.watchdog.timeout_s = f.timeout;
    options.watchdog.flight_tail = f.flight_tail;
    options.schedule_name = name;
    options.faults = PlanFrom(f, schedule, options.exec.model, name);
    if (!f.save_plan.empty() && leader) WriteOutput(f.save_plan, options.faults.Json());
    options.on_fatal = [&](const RunOutcome& outcome) {
      progress.Finish();
      Emit(f, outcome, options.faults);
      WritePictures(f, outcome, schedule, options.faults);
    };
    const RunOutcome outcome = RunAndCompare(schedule, options, *world);
    progress.Finish();
    if (outcome.leader) {
      Emit(f, outcome, options.faults);
      WritePictures(f, outcome, schedule, options.faults);
    }
    return outcome.ExitCode();
  } catch (const InputError& e) {
    if (leader) std::cerr << (e.location().empty() ? "pipeproof: " : "") << e.what() << '\n';
    return kExitBadInput;
  }
}

}  // namespace

void AddRunCommands(CLI::App& app, Commands& commands) {
  auto flags = std::make_shared<RunFlags>();
  CLI::App* cmd = app.add_subcommand(
      "run",
      "Verify a schedule, run it on real ranks (threads, MPI processes or one GPU's streams) under "
      "injected faults and compare everything with the sequential reference. Exit 0 match, "
      "1 mismatch, 2 bad input or a schedule that fails verification, 3 hang, dead rank or runtime "
      "fault");
  AddFlags(cmd, *flags);
  commands.push_back({cmd, [flags] { return Run(*flags); }});
}

}  // namespace pipeproof
