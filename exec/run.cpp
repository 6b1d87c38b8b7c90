#include "exec/run.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "exec/fault_draw.h"
#include "exec/inproc_transport.h"

namespace pipeproof {

namespace {

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// "2 blocked, 1 dead, 1 done": how the ranks stand.
std::string Census(const std::vector<RankSnapshot>& ranks) {
  std::map<std::string, int> count;
  for (const RankSnapshot& s : ranks) ++count[s.answered ? std::string(RankActivityName(s.activity)) : "silent"];
  std::vector<std::string> parts;
  for (const auto& [name, n] : count) parts.push_back(fmt::format("{} {}", n, name));
  return fmt::format("{}", fmt::join(parts, ", "));
}

// Ranks as threads of this process, over the endpoints its factory makes (the in-process fabric by
// default); the calling thread watches.
class ThreadWorld final : public World {
 public:
  ThreadWorld(std::string name, EndpointFactory make_endpoints)
      : name_(std::move(name)),
        make_endpoints_(make_endpoints ? std::move(make_endpoints) : FabricEndpoints()) {}
  std::string TransportName() const override { return name_; }
  int ranks() const override { return 0; }
  bool leader() const override { return true; }

  Execution Execute(const RunPlan& plan, const FaultPlan& faults, const ExecOptions& options,
                    const WatchdogOptions& watchdog, const std::function<void(const Execution&)>&) override {
    const int n = plan.ranks;
    StopSignal stop;
    const Clock::time_point start = Clock::now();
    std::vector<std::unique_ptr<FlightRecorder>> recorders;
    std::vector<std::unique_ptr<Device>> devices;
    std::vector<Device*> by_rank;
    for (int r = 0; r < n; ++r) {
      recorders.push_back(std::make_unique<FlightRecorder>(r, plan, options.flight_capacity, start));
      devices.push_back(MakeDevice(options, r));
      by_rank.push_back(devices.back().get());
    }
    // Declared after the devices, so they go first: no message outlives the memory it moves.
    std::vector<std::unique_ptr<Transport>> endpoints = make_endpoints_(by_rank, stop);
    std::vector<RankOutcome> outcomes(n);
    int finished = 0;
    std::mutex mutex;
    std::condition_variable cv;
    const int wake = stop.OnStop([&] {
      std::lock_guard lock(mutex);
      cv.notify_all();
    });
    std::vector<std::thread> threads;
    for (int r = 0; r < n; ++r) {
      threads.emplace_back([&, r] {
        outcomes[r] = RunRank(plan, faults, options, *endpoints[r], *devices[r], *recorders[r], stop);
        if (outcomes[r].end == RankEnd::kFailed) stop.Stop();
        std::lock_guard lock(mutex);
        ++finished;
        cv.notify_all();
      });
    }

    Execution e;
    const auto timeout = std::chrono::duration<double>(watchdog.timeout_s);
    const auto tick = std::chrono::duration<double>(std::clamp(watchdog.timeout_s / 20, 0.002, 0.05));
    auto all_finished = [&] {
      std::lock_guard lock(mutex);
      return finished == n;
    };
    while (!stop.stopped()) {
      {
        std::unique_lock lock(mutex);
        if (cv.wait_for(lock, tick, [&] { return finished == n || stop.stopped(); })) break;
      }
      if (watchdog.progress) watchdog.progress("executing", FinishedActions(recorders), TotalComputes(plan));
      bool busy = false;
      Clock::time_point last = start;
      for (const auto& rec : recorders) {
        busy |= rec->Busy();
        last = std::max(last, rec->last_progress());
      }
      if (!busy && Clock::now() - last >= timeout && !all_finished()) {
        e.end = Execution::End::kHang;
        e.snapshots = Snapshots(recorders, watchdog.flight_tail);
        e.headline = fmt::format("hang: no rank has made progress for {:.2f}s (--timeout {:g}s); ranks: {}",
                                 Seconds(Clock::now() - last), watchdog.timeout_s, Census(e.snapshots));
        stop.Stop();
      }
    }
    for (auto& t : threads) t.join();
    stop.Forget(wake);
    e.seconds = Seconds(Clock::now() - start);
    if (e.end == Execution::End::kHang) return e;
    for (int r = 0; r < n; ++r) {
      if (outcomes[r].end == RankEnd::kFailed) {
        e.end = Execution::End::kFailed;
        e.headline = fmt::format("runtime fault on rank {}: {}", r, outcomes[r].error);
        e.snapshots = Snapshots(recorders, watchdog.flight_tail);
        return e;
      }
    }
    // A rank killed so late that its peers could finish without it: the run still did not
    // complete (under MPI its missing results leave rank 0 waiting, and the watchdog ends it).
    for (int r = 0; r < n; ++r) {
      if (outcomes[r].end == RankEnd::kDead) {
        e.end = Execution::End::kHang;
        e.snapshots = Snapshots(recorders, watchdog.flight_tail);
        e.headline = fmt::format("dead rank: rank {} stopped before finishing; ranks: {}", r, Census(e.snapshots));
        return e;
      }
    }
    for (int r = 0; r < n; ++r) e.ranks.push_back(std::move(outcomes[r].result));
    return e;
  }

 private:
  static int64_t FinishedActions(const std::vector<std::unique_ptr<FlightRecorder>>& recorders) {
    int64_t done = 0;
    for (const auto& r : recorders) done += r->finished_actions();
    return done;
  }
  static int64_t TotalComputes(const RunPlan& plan) {
    int64_t total = 0;
    for (int r = 0; r < plan.ranks; ++r) total += plan.Computes(r);
    return total;
  }

  static std::vector<RankSnapshot> Snapshots(const std::vector<std::unique_ptr<FlightRecorder>>& recorders, size_t tail) {
    std::vector<RankSnapshot> out;
    for (const auto& r : recorders) out.push_back(r->Snapshot(tail));
    return out;
  }

  std::string name_;
  EndpointFactory make_endpoints_;
};

bool ControlCausesHang(const FaultPlan& p) {
  return p.kill || (p.corrupt && p.corrupt->kind == CorruptKind::kDrop);
}

// Decides what an execution means, on the leader.
void Judge(const Schedule& schedule, const RunOptions& options, RunOutcome& o) {
  const FaultPlan& faults = options.faults;
  Execution& e = o.execution;
  // A process that never answered (MPI) is most likely the one the plan killed: say so.
  for (RankSnapshot& s : e.snapshots) {
    if (!s.answered && faults.kill && faults.kill->rank == s.rank) {
      s.doing = fmt::format("the fault plan kills it before its action #{} (negative control)", faults.kill->action);
    }
  }
  if (e.end == Execution::End::kHang) {
    o.status = RunStatus::kHang;
    o.headline = e.headline;
    if (faults.HasNegativeControl()) {
      o.control_caught = ControlCausesHang(faults);
      o.negative_control = fmt::format("{}: {}", faults.DescribeNegativeControl(),
                                       o.control_caught ? "caught, the run hung and the watchdog stopped it"
                                                        : "the run hung instead of showing a mismatch");
    }
    return;
  }
  if (e.end == Execution::End::kFailed) {
    o.status = RunStatus::kFault;
    o.headline = e.headline;
    if (faults.HasNegativeControl()) {
      o.negative_control = faults.DescribeNegativeControl() + ": the run failed before it could be judged";
    }
    return;
  }
  if (options.exec.record_timeline) {
    std::vector<std::vector<RecordedSpan>> spans;
    for (const RankResult& r : e.ranks) spans.push_back(r.timeline);
    o.timeline = BuildRunTimeline(PlanRun(schedule, options.streams), spans);
  }
  StepResults run = AssembleResults(schedule, options.exec.model, e.ranks);
  const bool exact = options.policy.mode == ComparePolicy::Mode::kExact;
  const AccumulationOrder order =
      AccumulationOrderOf(schedule, exact ? AccumulationMode::kSchedule : AccumulationMode::kNatural);
  const Clock::time_point t0 = Clock::now();
  if (options.progress) options.progress("sequential reference", 0, 0);
  std::unique_ptr<Device> device = MakeDevice(options.exec, -1);
  StepResults reference = RunReference(schedule, options.exec.model, order, *device);
  o.reference_seconds = Seconds(Clock::now() - t0);
  if (options.progress) options.progress("comparing", 0, 0);
  o.comparison = CompareStep(schedule, run, reference, options.policy);
  o.run_results = std::move(run);
  o.reference_results = std::move(reference);
  const bool ok = o.comparison->ok();
  o.status = ok ? RunStatus::kMatch : RunStatus::kMismatch;
  o.headline = ok ? fmt::format("match: every loss, output and gradient equals the reference{}",
                                exact ? " bit for bit" : " within tolerance")
                  : fmt::format("MISMATCH: {} of {} tensors differ from the reference",
                                o.comparison->MismatchingTensors(), o.comparison->tensors.size());
  if (faults.HasNegativeControl()) {
    o.control_caught = !ok && !ControlCausesHang(faults);
    o.negative_control = fmt::format(
        "{}: {}", faults.DescribeNegativeControl(),
        o.control_caught ? "caught, the results differ from the reference"
        : exact          ? "NOT CAUGHT: the run completed and matched bit for bit"
                         : "NOT CAUGHT: the run matched within tolerance (a corruption smaller than "
                           "--rtol/--atol passes; tighten them or use --exact)");
    if (!o.control_caught) {
      o.status = RunStatus::kFault;
      // Bit for bit, nothing but pipeproof can hide a corruption; within tolerance the user's
      // tolerance can, so the headline says which it is.
      o.headline = exact ? "FAULT IN PIPEPROOF: a negative control went unnoticed; " + o.headline
                         : "NEGATIVE CONTROL NOT CAUGHT within the tolerance given (--rtol/--atol "
                           "too wide for it?); " + o.headline;
    }
  }
}

}  // namespace

EndpointFactory FabricEndpoints(CopierFactory make_copier) {
  return [make_copier = std::move(make_copier)](const std::vector<Device*>& devices, StopSignal& stop) {
    // The endpoints share the fabric's state: it lives as long as they do.
    InProcessFabric fabric(static_cast<int>(devices.size()), stop, make_copier ? make_copier(devices) : nullptr);
    std::vector<std::unique_ptr<Transport>> endpoints;
    for (int r = 0; r < static_cast<int>(devices.size()); ++r) endpoints.push_back(fabric.Endpoint(r));
    return endpoints;
  };
}

std::unique_ptr<World> MakeThreadWorld(std::string name, EndpointFactory make_endpoints) {
  return std::make_unique<ThreadWorld>(std::move(name), std::move(make_endpoints));
}

int RunOutcome::ExitCode() const {
  switch (status) {
    case RunStatus::kMatch: return 0;
    case RunStatus::kMismatch: return 1;
    case RunStatus::kHang:
    case RunStatus::kFault: return 3;
  }
  return 3;
}

std::string_view RunStatusName(RunStatus s) {
  switch (s) {
    case RunStatus::kMatch: return "match";
    case RunStatus::kMismatch: return "mismatch";
    case RunStatus::kHang: return "hang";
    case RunStatus::kFault: return "fault";
  }
  return "fault";
}

namespace {

std::string Indent(const std::string& text, const std::string& prefix) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    out += prefix + text.substr(pos, end - pos) + "\n";
    pos = end + 1;
  }
  return out;
}
}  // namespace

std::string RunOutcome::Text() const {
  std::string out = fmt::format("run: {} on {}{}; {}\n", schedule_name, transport,
                                streams == StreamLayout::kRank
                                    ? ""
                                    : fmt::format(" (--streams {})", StreamLayoutName(streams)),
                                Describe(model));
  out += "faults:\n" + Indent(faults_summary, "  ");
  out += fmt::format("executed in {:.3f}s", execution.seconds);
  if (comparison) out += fmt::format(", reference in {:.3f}s", reference_seconds);
  out += "\n";
  if (comparison) out += comparison->Text();
  if (!execution.snapshots.empty()) out += FormatDump(execution.headline, execution.snapshots);
  if (!negative_control.empty()) out += "negative control: " + negative_control + "\n";
  out += fmt::format("result: {} (exit {})\n", headline, ExitCode());
  return out;
}

std::string RunOutcome::Json() const {
  nlohmann::json j;
  j["status"] = RunStatusName(status);
  j["exit"] = ExitCode();
  j["headline"] = headline;
  j["schedule"] = schedule_name;
  j["transport"] = transport;
  j["streams"] = std::string(StreamLayoutName(streams));
  j["model"] = {{"hidden", model.shape.hidden},
                {"seq", model.shape.seq},
                {"micro_batch_size", model.shape.micro_batch_size},
                {"dtype", DTypeName(model.dtype)},
                {"seed", model.seed}};
  j["faults"] = faults_summary;
  if (!negative_control.empty()) j["negative_control"] = {{"description", negative_control}, {"caught", control_caught}};
  j["timing"] = {{"run_s", execution.seconds}, {"reference_s", reference_seconds}};
  if (!execution.ranks.empty()) {
    j["peak_bytes_per_rank"] = nlohmann::json::array();
    for (const RankResult& r : execution.ranks) j["peak_bytes_per_rank"].push_back(r.memory.peak_bytes);
  }
  if (comparison) j["comparison"] = nlohmann::json::parse(comparison->Json());
  if (!execution.snapshots.empty()) j["dump"] = nlohmann::json::parse(DumpJson(execution.headline, execution.snapshots));
  if (timeline) j["timeline"] = nlohmann::json::parse(timeline->Json());
  return j.dump(2) + "\n";
}

void CheckStreamsFitTransport(StreamLayout streams, std::string_view transport) {
  if (streams == StreamLayout::kRank || !transport.starts_with("nccl")) return;
  throw InputError(fmt::format(
      "--streams {} needs a communicator per {}; the NCCL transport has one per rank: run it "
      "with --streams rank, or on the threads, mpi or streams transport",
      StreamLayoutName(streams), streams == StreamLayout::kPair ? "rank pair" : "directed edge"));
}

RunOutcome RunAndCompare(const Schedule& schedule, const RunOptions& options, World& world) {
  CheckStreamsFitTransport(options.streams, world.TransportName());
  const RunPlan plan = PlanRun(schedule, options.streams);
  CheckPlanFits(options.faults, plan);
  RunOutcome outcome;
  outcome.transport = world.TransportName();
  outcome.streams = options.streams;
  outcome.schedule_name = options.schedule_name;
  outcome.model = options.exec.model;
  outcome.faults_summary = options.faults.Summary();
  // ---- planted bugs (test hook of the fuzz campaign, see PlantedBug; begin) ----
  ExecOptions exec = options.exec;
  if (exec.planted_bug == PlantedBug::kNone) exec.planted_bug = PlantedBugFromEnvironment();
  if (exec.planted_bug != PlantedBug::kNone) {
    if (outcome.faults_summary == "no faults\n") outcome.faults_summary.clear();
    outcome.faults_summary += fmt::format("PLANTED EXECUTOR BUG: {} (a test hook, {})\n",
                                          PlantedBugName(exec.planted_bug), kPlantedBugVariable);
  }
  // ---- planted bugs (end) ----
  auto on_hang = [&](const Execution& e) {
    RunOutcome fatal = outcome;
    fatal.execution = e;
    Judge(schedule, options, fatal);
    if (options.on_fatal) options.on_fatal(fatal);
  };
  outcome.execution = world.Execute(plan, options.faults, exec, options.watchdog, on_hang);
  outcome.leader = world.leader();
  if (outcome.leader) Judge(schedule, options, outcome);
  const int agreed = world.AgreeOnStatus(outcome.ExitCode());
  if (!outcome.leader) {
    outcome.status = agreed == 0 ? RunStatus::kMatch : agreed == 1 ? RunStatus::kMismatch : RunStatus::kFault;
  }
  return outcome;
}

}  // namespace pipeproof
