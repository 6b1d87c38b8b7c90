#include "fuzz/campaign.h"

#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

namespace pipeproof {
namespace {

using Clock = std::chrono::steady_clock;
using Rng = std::mt19937_64;

double Since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// SplitMix64: decorrelates the streams of neighbouring (seed, case) pairs.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

bool Coin(Rng& rng, double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }
int Uniform(Rng& rng, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
template <typename T>
const T& Choose(Rng& rng, const std::vector<T>& from) {
  return from[Uniform(rng, 0, static_cast<int>(from.size()) - 1)];
}

// The largest valid count not above `m`, else the smallest valid one.
int ClosestBelow(const std::vector<int>& valid, int m) {
  int best = valid.front();
  for (int v : valid) {
    if (v <= m) best = v;
  }
  return best;
}

// Candidates smaller than `current` among `valid`: the smallest, the middle one, the next one
// down (big steps first, as a shrinker should try them).
std::vector<int> SmallerValues(const std::vector<int>& valid, int current) {
  std::vector<int> below;
  for (int v : valid) {
    if (v < current) below.push_back(v);
  }
  std::vector<int> out;
  if (below.empty()) return out;
  for (int v : {below.front(), below[below.size() / 2], below.back()}) {
    if (std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
  }
  return out;
}

// ---- text

// A word for the shell: as it is when it holds only safe characters, else single-quoted.
std::string ShellQuote(const std::string& word) {
  const bool safe = !word.empty() && std::all_of(word.begin(), word.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) || std::string_view("/._-+=:,@%").find(ch) != std::string_view::npos;
  });
  if (safe) return word;
  std::string out = "'";
  for (char ch : word) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw InputError(fmt::format("cannot write {}", path));
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream all;
  all << in.rdbuf();
  return all.str();
}

// ---- verdicts

Verdict LegalVerdict(std::string_view status) {
  if (status == "match") return Verdict::kPass;
  if (status == "mismatch") return Verdict::kMismatch;
  if (status == "hang") return Verdict::kHang;
  return Verdict::kFault;
}

// A case with a negative control passes when the control was caught: the run must not match and
// must not say the control went unnoticed.
Verdict ControlVerdict(std::string_view status, bool caught) {
  return caught && status != "match" ? Verdict::kPass : Verdict::kFault;
}

}  // namespace

ModelConfig CaseSettings::SmallModel() {
  ModelConfig m;
  m.shape = {8, 4, 2};
  return m;
}

std::string CampaignCase::Describe() const {
  std::string out = fmt::format("{} {}x{}", schedule.kind, schedule.ranks, schedule.microbatches);
  if (ScheduleKindNamed(schedule.kind).uses_overlap) out += schedule.overlap ? " (overlap)" : " (no overlap)";
  if (ScheduleKindNamed(schedule.kind).uses_virtual_stages) out += fmt::format(" (v={})", schedule.virtual_stages);
  if (schedule.wait_sends) out += " (WAIT_SENDs)";
  std::vector<std::string> faults;
  if (plan) {  // its summary, one kind of fault per line
    std::istringstream lines(plan->Summary());
    for (std::string line; std::getline(lines, line);) {
      if (line != "no faults") faults.push_back(line);
    }
  } else {
    if (this->faults.delay) faults.push_back("delay " + this->faults.delay->ToString());
    for (const Straggler& s : this->faults.stragglers) faults.push_back(fmt::format("straggler {}:{:g}", s.rank, s.factor));
    if (this->faults.shuffle) faults.push_back("shuffle");
    if (this->faults.poison) faults.push_back("poison");
    if (this->faults.corrupt) faults.push_back(fmt::format("corrupt {}", CorruptKindName(*this->faults.corrupt)));
    if (this->faults.kill_rank) faults.push_back(fmt::format("kill rank {}", *this->faults.kill_rank));
  }
  return out + (faults.empty() ? ", no faults" : ", " + fmt::format("{}", fmt::join(faults, "; ")));
}

Schedule CaseSchedule(const CampaignCase& c) {
  GenerateOptions g = c.schedule;
  g.with_comm = true;
  return Generate(g);
}

std::string CaseScheduleName(const CampaignCase& c) {
  const Schedule s = CaseSchedule(c);
  return fmt::format("{}, {} ranks, {} stages, {} microbatches", c.schedule.kind, s.ranks, s.stages, s.microbatches);
}

FaultPlan CasePlan(const CampaignCase& c, const CaseSettings& settings) {
  if (c.plan) return *c.plan;
  const Schedule s = CaseSchedule(c);
  const MessageFormat format = MessageFormatOf(settings.model);
  return DrawFaultPlan(PlanRun(s), c.faults, format, CaseScheduleName(c));
}

std::string_view VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kPass: return "pass";
    case Verdict::kMismatch: return "mismatch";
    case Verdict::kHang: return "hang";
    case Verdict::kFault: return "fault";
  }
  return "?";
}

// ---- runners

namespace {

double TimeoutOf(const CampaignCase& c, const CaseSettings& settings) {
  return c.HasControl() ? settings.control_timeout_s : settings.timeout_s;
}

class ThreadRunner final : public CaseRunner {
 public:
  explicit ThreadRunner(std::function<std::unique_ptr<World>()> make_world)
      : make_world_(make_world ? std::move(make_world) : [] { return MakeThreadWorld(); }),
        transport_(make_world_()->TransportName()) {}

  std::string Transport() const override { return transport_; }

  CaseOutcome Run(const CampaignCase& c, const FaultPlan& plan, const CaseSettings& settings) override {
    const Clock::time_point start = Clock::now();
    RunOptions o;
    o.exec.model = settings.model;
    o.exec.planted_bug = settings.planted_bug;
    o.exec.make_device = settings.make_device;
    o.streams = settings.streams;
    o.policy = ComparePolicy::Exact();
    o.faults = plan;
    o.watchdog.timeout_s = TimeoutOf(c, settings);
    o.schedule_name = CaseScheduleName(c);
    std::unique_ptr<World> world = make_world_();
    const RunOutcome run = RunAndCompare(CaseSchedule(c), o, *world);
    CaseOutcome out;
    const std::string_view status = RunStatusName(run.status);
    out.verdict = plan.HasNegativeControl() ? ControlVerdict(status, run.control_caught) : LegalVerdict(status);
    out.exit_code = run.ExitCode();
    out.headline = run.headline;
    out.seconds = Since(start);
    return out;
  }

 private:
  std::function<std::unique_ptr<World>()> make_world_;
  std::string transport_;
};

// A case as a process tree of its own, on purpose: MPI's ranks are processes under a launcher, an
// MPI world can be started only once per process (MPI_Init after MPI_Finalize is an error), and a
// hung or killed case ends with MPI_Abort, which would take the campaign with it. Threads-transport
// cases need none of that and run in-process (ThreadRunner).
class CommandRunner final : public CaseRunner {
 public:
  explicit CommandRunner(CommandRunnerOptions options) : options_(std::move(options)) {
    if (options_.scratch_dir.empty()) {
      options_.scratch_dir = (std::filesystem::temp_directory_path() / fmt::format("pipeproof-fuzz-{}", ::getpid())).string();
    }
    std::filesystem::create_directories(options_.scratch_dir);
  }

  std::string Transport() const override { return options_.transport; }

  CaseOutcome Run(const CampaignCase& c, const FaultPlan& plan, const CaseSettings& settings) override {
    const Clock::time_point start = Clock::now();
    const std::string base = fmt::format("{}/case-{}", options_.scratch_dir, c.number);
    const std::string plan_path = base + "-plan.json", report_path = base + "-report.json";
    WriteFile(plan_path, plan.Json());
    std::filesystem::remove(report_path);
    const std::string command = ReplayCommand(options_.pipeproof, c, settings, plan_path, options_.transport,
                                              options_.launcher) +
                                " --report " + ShellQuote(report_path) + " >" + ShellQuote(base + ".out") + " 2>" +
                                ShellQuote(base + ".err");
    CaseOutcome out;
    out.exit_code = RunShell(command);
    out.seconds = Since(start);
    nlohmann::json report;
    try {
      report = nlohmann::json::parse(ReadFile(report_path));
    } catch (const nlohmann::json::exception&) {
      out.verdict = Verdict::kFault;
      out.headline = fmt::format("`pipeproof run` exited {} without a report: {}", out.exit_code,
                                 ReadFile(base + ".err").substr(0, 400));
      return out;
    }
    const std::string status = report.value("status", "fault");
    const bool caught = report.contains("negative_control") && report["negative_control"].value("caught", false);
    out.verdict = plan.HasNegativeControl() ? ControlVerdict(status, caught) : LegalVerdict(status);
    out.headline = report.value("headline", "");
    return out;
  }

 private:
  CommandRunnerOptions options_;
};

}  // namespace

std::unique_ptr<CaseRunner> MakeThreadRunner(std::function<std::unique_ptr<World>()> make_world) {
  return std::make_unique<ThreadRunner>(std::move(make_world));
}

std::unique_ptr<CaseRunner> MakeCommandRunner(const CommandRunnerOptions& options) {
  return std::make_unique<CommandRunner>(options);
}

void CheckLauncher(const std::string& launcher) {
  std::istringstream words(launcher);
  std::string program;
  words >> program;
  if (program.empty()) return;  // no launcher: the command runs as it is
  auto runnable = [](const std::string& path) { return ::access(path.c_str(), X_OK) == 0; };
  bool found = false;
  if (program.find('/') != std::string::npos) {
    found = runnable(program);
  } else if (const char* path = std::getenv("PATH")) {
    std::istringstream dirs(path);
    for (std::string dir; !found && std::getline(dirs, dir, ':');) {
      found = runnable((dir.empty() ? "." : dir) + "/" + program);
    }
  }
  if (!found) {
    throw InputError(fmt::format(
        "--launcher '{}': '{}' cannot be started (not found on PATH, or not executable)",
        launcher, program));
  }
}

std::string ReplayCommand(const std::string& pipeproof, const CampaignCase& c, const CaseSettings& settings,
                          const std::string& plan_path, const std::string& transport, const std::string& launcher) {
  std::string out;
  if (settings.planted_bug != PlantedBug::kNone) {
    out += fmt::format("{}={} ", kPlantedBugVariable, PlantedBugName(settings.planted_bug));
  }
  if (!launcher.empty()) {
    std::string l = launcher;
    for (size_t at; (at = l.find("{ranks}")) != std::string::npos;) l.replace(at, 7, std::to_string(c.schedule.ranks));
    out += l + " ";
  }
  out += ShellQuote(pipeproof) + " run";
  if (transport != "threads" && transport != "streams") out += " --transport " + transport;
  if (settings.device != "cpu") out += " --device " + settings.device;
  if (settings.streams != StreamLayout::kRank) {
    out += fmt::format(" --streams {}", StreamLayoutName(settings.streams));
  }
  out += fmt::format(" --kind {} -r {} -m {}", c.schedule.kind, c.schedule.ranks, c.schedule.microbatches);
  if (ScheduleKindNamed(c.schedule.kind).uses_virtual_stages) out += fmt::format(" --virtual-stages {}", c.schedule.virtual_stages);
  if (ScheduleKindNamed(c.schedule.kind).uses_overlap && !c.schedule.overlap) out += " --no-overlap";
  if (c.schedule.wait_sends) out += " --wait-sends";
  const ModelConfig& m = settings.model;
  out += fmt::format(" --hidden {} --seq {} --micro-batch-size {} --dtype {} --model-seed {}", m.shape.hidden,
                     m.shape.seq, m.shape.micro_batch_size, DTypeName(m.dtype), m.seed);
  out += fmt::format(" --timeout {:g} --replay {}", TimeoutOf(c, settings), ShellQuote(plan_path));
  return out;
}

int RunShell(const std::string& command) {
  const int raw = std::system(command.c_str());
  if (raw == -1) return 127;
  return WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
}

CaseOutcome RunCase(CaseRunner& runner, const CampaignCase& c, const FaultPlan& plan, const CaseSettings& settings) {
  try {
    return runner.Run(c, plan, settings);
  } catch (const std::exception& e) {
    CaseOutcome out;
    out.verdict = Verdict::kFault;
    out.exit_code = 3;
    out.headline = fmt::format("the run threw: {}", e.what());
    return out;
  }
}

// ---- drawing

CampaignCase DrawCase(uint64_t seed, int64_t number, const DrawLimits& limits) {
  Rng rng(Mix(Mix(seed) ^ static_cast<uint64_t>(number)));
  CampaignCase c;
  c.number = number;
  GenerateOptions& g = c.schedule;
  g.kind = Choose(rng, limits.kinds);
  g.ranks = Choose(rng, ValidRanks(g.kind, limits.max_ranks));
  g.microbatches = Choose(rng, ValidMicrobatches(g.kind, g.ranks, limits.max_microbatches_per_rank * g.ranks));
  g.virtual_stages = ScheduleKindNamed(g.kind).uses_virtual_stages ? Uniform(rng, 1, 3) : 2;
  g.overlap = Coin(rng, 0.5);
  // Half the lowered kinds wait for their sends as PyTorch's runtime does; drawn apart from `rng`
  // so that every other draw stays what it was.
  g.wait_sends = ScheduleKindNamed(g.kind).lowered && (Mix(Mix(seed ^ 0x5741495453454e44) ^ number) & 1) != 0;

  FaultOptions& f = c.faults;
  f.seed = rng() % 1000000000;
  if (Coin(rng, 0.85)) {
    DelaySpec d;
    d.distribution = Choose(rng, std::vector{DelayDistribution::kUniform, DelayDistribution::kExponential,
                                             DelayDistribution::kHeavyTailed});
    // Log-uniform from 2us up: short delays reorder, long ones let buffers be reused meanwhile.
    const double lo = std::log(2.0), hi = std::log(std::max(2.0, limits.max_delay_mean_us));
    d.mean_us = std::round(std::exp(std::uniform_real_distribution<double>(lo, hi)(rng)));
    do {
      d.at_post = Coin(rng, 0.6);
      d.at_deliver = Coin(rng, 0.6);
      d.at_compute = Coin(rng, 0.6);
    } while (!d.at_post && !d.at_deliver && !d.at_compute);
    f.delay = d;
  }
  if (Coin(rng, 0.3)) f.stragglers.push_back({Uniform(rng, 0, g.ranks - 1), 1.5 + 0.5 * Uniform(rng, 0, 5)});
  f.shuffle = Coin(rng, 0.5);
  f.poison = Coin(rng, 0.5);
  if (Coin(rng, limits.controls)) {
    switch (Uniform(rng, 0, 3)) {
      case 0: f.corrupt = CorruptKind::kBitflip; break;
      case 1: f.corrupt = CorruptKind::kSwap; break;
      case 2: f.corrupt = CorruptKind::kDrop; break;
      default: f.kill_rank = Uniform(rng, 0, g.ranks - 1); break;
    }
  }
  return c;
}

std::vector<GenerateOptions> LargestSchedules(const DrawLimits& limits) {
  std::vector<GenerateOptions> out;
  for (const std::string& kind : limits.kinds) {
    GenerateOptions g;
    g.kind = kind;
    g.ranks = ValidRanks(kind, limits.max_ranks).back();
    g.microbatches = ValidMicrobatches(kind, g.ranks, limits.max_microbatches_per_rank * g.ranks).back();
    g.virtual_stages = ScheduleKindNamed(kind).uses_virtual_stages ? 3 : 2;  // DrawCase's most
    out.push_back(g);
  }
  return out;
}

// ---- shrinking

namespace {

// The ranks' delay sites of a plan: (rank, which array, index) with a non-zero delay.
struct DelaySite {
  int rank = 0;
  int array = 0;  // 0 post, 1 deliver, 2 compute
  size_t index = 0;
};

std::vector<uint32_t>& DelayArray(FaultPlan& plan, const DelaySite& site) {
  RankFaults& f = plan.ranks[site.rank];
  return site.array == 0 ? f.post_delay_us : site.array == 1 ? f.deliver_delay_us : f.compute_delay_us;
}

uint32_t DelayAt(const FaultPlan& plan, const DelaySite& site) {
  const RankFaults& f = plan.ranks[site.rank];
  return (site.array == 0 ? f.post_delay_us : site.array == 1 ? f.deliver_delay_us : f.compute_delay_us)[site.index];
}

std::vector<DelaySite> DelaySites(const FaultPlan& plan) {
  std::vector<DelaySite> out;
  for (int r = 0; r < static_cast<int>(plan.ranks.size()); ++r) {
    const RankFaults& f = plan.ranks[r];
    const std::vector<uint32_t>* arrays[] = {&f.post_delay_us, &f.deliver_delay_us, &f.compute_delay_us};
    for (int a = 0; a < 3; ++a) {
      for (size_t i = 0; i < arrays[a]->size(); ++i) {
        if ((*arrays[a])[i] != 0) out.push_back({r, a, i});
      }
    }
  }
  return out;
}

// `plan` with only the delays at `keep` left (the others zero).
FaultPlan KeepDelays(const FaultPlan& plan, const std::vector<DelaySite>& keep) {
  FaultPlan out = plan;
  for (RankFaults& f : out.ranks) {
    for (auto* a : {&f.post_delay_us, &f.deliver_delay_us, &f.compute_delay_us}) std::fill(a->begin(), a->end(), 0);
  }
  for (const DelaySite& site : keep) {
    DelayArray(out, site)[site.index] = DelayAt(plan, site);
  }
  return out;
}

// Fewer-delay and fewer-fault candidates are judged by `fails`; the result keeps as few items
// as delta debugging finds: chunks of the items are dropped while the failure persists, the
// chunks getting smaller until single items are tried.
template <typename T>
std::vector<T> Minimize(std::vector<T> items, const std::function<bool(const std::vector<T>&)>& fails,
                        const std::function<bool()>& out_of_budget) {
  if (items.empty() || fails({})) return {};
  size_t chunks = 2;
  while (items.size() > 1 && !out_of_budget()) {
    const size_t size = (items.size() + chunks - 1) / chunks;
    bool dropped = false;
    for (size_t start = 0; start < items.size() && !out_of_budget(); start += size) {
      std::vector<T> rest(items.begin(), items.begin() + start);
      rest.insert(rest.end(), items.begin() + std::min(items.size(), start + size), items.end());
      if (fails(rest)) {
        items = std::move(rest);
        chunks = std::max<size_t>(chunks - 1, 2);
        dropped = true;
        break;
      }
    }
    if (!dropped) {
      if (size == 1) break;
      chunks = std::min(items.size(), chunks * 2);
    }
  }
  return items;
}

void TrimTrailingZeros(FaultPlan& plan) {
  for (RankFaults& f : plan.ranks) {
    for (auto* a : {&f.post_delay_us, &f.deliver_delay_us, &f.compute_delay_us}) {
      while (!a->empty() && a->back() == 0) a->pop_back();
    }
  }
}

// The size and fault-kind candidates of a case whose plan is still drawn from its options.
std::vector<CampaignCase> StructuralCandidates(const CampaignCase& c) {
  std::vector<CampaignCase> out;
  const GenerateOptions& g = c.schedule;
  auto with_ranks = [&](int ranks) {
    CampaignCase x = c;
    x.schedule.ranks = ranks;
    x.schedule.microbatches = ClosestBelow(ValidMicrobatches(g.kind, ranks, g.microbatches), g.microbatches);
    std::erase_if(x.faults.stragglers, [&](const Straggler& s) { return s.rank >= ranks; });
    if (x.faults.kill_rank) x.faults.kill_rank = std::min(*x.faults.kill_rank, ranks - 1);
    return x;
  };
  for (int r : SmallerValues(ValidRanks(g.kind, g.ranks), g.ranks)) out.push_back(with_ranks(r));
  for (int m : SmallerValues(ValidMicrobatches(g.kind, g.ranks, g.microbatches), g.microbatches)) {
    CampaignCase x = c;
    x.schedule.microbatches = m;
    out.push_back(x);
  }
  if (ScheduleKindNamed(g.kind).uses_virtual_stages && g.virtual_stages > 1) {
    CampaignCase x = c;
    x.schedule.virtual_stages = 1;
    out.push_back(x);
  }
  auto with_faults = [&](const std::function<void(FaultOptions&)>& change) {
    CampaignCase x = c;
    change(x.faults);
    out.push_back(x);
  };
  if (c.faults.delay) with_faults([](FaultOptions& f) { f.delay.reset(); });
  if (!c.faults.stragglers.empty()) with_faults([](FaultOptions& f) { f.stragglers.clear(); });
  if (c.faults.shuffle) with_faults([](FaultOptions& f) { f.shuffle = false; });
  if (c.faults.poison) with_faults([](FaultOptions& f) { f.poison = false; });
  if (c.faults.delay) {
    const DelaySpec& d = *c.faults.delay;
    const int sites = d.at_post + d.at_deliver + d.at_compute;
    if (sites > 1 && d.at_post) with_faults([](FaultOptions& f) { f.delay->at_post = false; });
    if (sites > 1 && d.at_deliver) with_faults([](FaultOptions& f) { f.delay->at_deliver = false; });
    if (sites > 1 && d.at_compute) with_faults([](FaultOptions& f) { f.delay->at_compute = false; });
    if (d.mean_us >= 2) with_faults([](FaultOptions& f) { f.delay->mean_us = std::floor(f.delay->mean_us / 2); });
  }
  return out;
}

class Shrinker {
 public:
  Shrinker(Verdict target, CaseRunner& runner, const CaseSettings& settings, const ShrinkOptions& options)
      : target_(target), runner_(runner), settings_(settings), options_(options) {}

  ShrinkResult Run(const CampaignCase& failing, const CaseOutcome& failure) {
    result_.minimal = failing;
    result_.outcome = failure;
    if (!failing.plan) ShrinkStructure();  // a concrete plan fits its schedule only
    ShrinkPlan();
    return std::move(result_);
  }

 private:
  bool OutOfBudget() const { return result_.runs >= options_.max_runs; }

  // Whether case `c` (its plan drawn, or `plan` when given) still fails the same way; on success
  // its outcome becomes the current one.
  bool Fails(const CampaignCase& c, const std::optional<FaultPlan>& plan = std::nullopt) {
    FaultPlan p;
    try {
      p = plan ? *plan : CasePlan(c, settings_);
    } catch (const InputError&) {
      return false;  // the options do not fit this size (a swap with no unit of two messages)
    }
    for (int attempt = 0; attempt < options_.attempts && !OutOfBudget(); ++attempt) {
      ++result_.runs;
      const CaseOutcome out = RunCase(runner_, c, p, settings_);
      if (out.verdict == target_) {
        last_ = out;
        return true;
      }
    }
    return false;
  }

  void Accept(const CampaignCase& c, const std::string& what) {
    result_.minimal = c;
    result_.outcome = last_;
    ++result_.steps;
    result_.log.push_back(what);
  }

  // Sizes and kinds of fault, greedily: the first candidate that keeps the failure is taken and
  // the search starts over from it.
  void ShrinkStructure() {
    bool progress = true;
    while (progress && !OutOfBudget()) {
      progress = false;
      for (const CampaignCase& candidate : StructuralCandidates(result_.minimal)) {
        if (OutOfBudget()) break;
        if (Fails(candidate)) {
          Accept(candidate, candidate.Describe());
          progress = true;
          break;
        }
      }
    }
  }

  // The concrete plan: delays dropped, the rest halved, shuffled units back in order.
  void ShrinkPlan() {
    CampaignCase c = result_.minimal;
    FaultPlan plan = CasePlan(c, settings_);
    auto try_plan = [&](const FaultPlan& candidate, const std::string& what) {
      if (!Fails(c, candidate)) return false;
      plan = candidate;
      c.plan = plan;
      Accept(c, what);
      return true;
    };
    const auto out_of_budget = [this] { return OutOfBudget(); };
    const std::vector<DelaySite> kept = Minimize<DelaySite>(
        DelaySites(plan), [&](const std::vector<DelaySite>& keep) { return Fails(c, KeepDelays(plan, keep)); },
        out_of_budget);
    if (kept.size() < DelaySites(plan).size()) {
      try_plan(KeepDelays(plan, kept), fmt::format("{} delays left", kept.size()));
    }
    for (int halvings = 0; halvings < 16 && !OutOfBudget() && !DelaySites(plan).empty(); ++halvings) {
      FaultPlan smaller = plan;
      for (const DelaySite& site : DelaySites(plan)) DelayArray(smaller, site)[site.index] /= 2;
      if (!try_plan(smaller, "every delay halved")) break;
    }
    std::vector<std::pair<int, size_t>> orders;
    for (int r = 0; r < static_cast<int>(plan.ranks.size()); ++r) {
      for (size_t k = 0; k < plan.ranks[r].unit_orders.size(); ++k) orders.push_back({r, k});
    }
    auto keep_orders = [&](const std::vector<std::pair<int, size_t>>& keep) {
      FaultPlan out = plan;
      for (RankFaults& f : out.ranks) f.unit_orders.clear();
      for (auto [r, k] : keep) out.ranks[r].unit_orders.push_back(plan.ranks[r].unit_orders[k]);
      return out;
    };
    const auto kept_orders = Minimize<std::pair<int, size_t>>(
        orders, [&](const auto& keep) { return Fails(c, keep_orders(keep)); }, out_of_budget);
    if (kept_orders.size() < orders.size()) {
      try_plan(keep_orders(kept_orders), fmt::format("{} shuffled units left", kept_orders.size()));
    }
    for (int r = 0; r < static_cast<int>(plan.ranks.size()) && !OutOfBudget(); ++r) {
      if (plan.ranks[r].straggler == 1) continue;
      FaultPlan x = plan;
      x.ranks[r].straggler = 1;
      try_plan(x, fmt::format("rank {} no straggler", r));
    }
    if (plan.poison && !OutOfBudget()) {
      FaultPlan x = plan;
      x.poison = false;
      try_plan(x, "no poisoning");
    }
    TrimTrailingZeros(plan);
    result_.minimal = c;
    result_.minimal.plan = plan;
    result_.plan = plan;
  }

  Verdict target_;
  CaseRunner& runner_;
  const CaseSettings& settings_;
  ShrinkOptions options_;
  ShrinkResult result_;
  CaseOutcome last_;
};

}  // namespace

ShrinkResult Shrink(const CampaignCase& failing, const CaseOutcome& failure, CaseRunner& runner,
                    const CaseSettings& settings, const ShrinkOptions& options) {
  return Shrinker(failure.verdict, runner, settings, options).Run(failing, failure);
}

// ---- the campaign

std::string ProgressLine(const CampaignStats& stats) {
  return fmt::format("{} cases, {} failures, {:.1f} cases/s", stats.cases, stats.failures,
                     stats.CasesPerSecond());
}

namespace {

// The case's plan; a swap that no unit of the schedule allows becomes a bitflip.
FaultPlan PlanForCase(CampaignCase& c, const CaseSettings& settings) {
  try {
    return CasePlan(c, settings);
  } catch (const InputError&) {
    if (c.faults.corrupt != CorruptKind::kSwap) throw;
    c.faults.corrupt = CorruptKind::kBitflip;
    return CasePlan(c, settings);
  }
}

std::string PlanFileName(const CampaignOptions& o, int64_t number) {
  return (std::filesystem::path(o.out_dir) / fmt::format("pipeproof-fuzz-seed{}-case{}-plan.json", o.seed, number))
      .string();
}

FailureReport ReportFailure(const CampaignOptions& options, CaseRunner& runner, const CampaignCase& found,
                            const CaseOutcome& first, const CampaignEvents& events) {
  auto say = [&](const std::string& line) {
    if (events.on_message) events.on_message(line);
  };
  FailureReport report;
  report.found = found;
  report.first = first;
  say(fmt::format("FAILURE in case {}: {}: {}: {}", found.number, found.Describe(), VerdictName(first.verdict),
                  first.headline));
  say("shrinking...");
  report.shrunk = Shrink(found, first, runner, options.settings, options.shrink);
  for (const std::string& step : report.shrunk.log) say("  shrunk: " + step);
  FaultPlan plan = report.shrunk.plan;
  plan.drawn_with = fmt::format("pipeproof fuzz --seed {}, case {}, shrunk in {} steps ({} runs); drawn as {}",
                                options.seed, found.number, report.shrunk.steps, report.shrunk.runs, plan.drawn_with);
  std::filesystem::create_directories(options.out_dir);
  report.plan_path = PlanFileName(options, found.number);
  WriteFile(report.plan_path, plan.Json());
  report.replay = ReplayCommand(options.pipeproof, report.shrunk.minimal, options.settings, report.plan_path,
                                runner.Transport(), options.launcher);
  say(fmt::format("minimal case: {} {}x{}, {}: {}", report.shrunk.minimal.schedule.kind,
                  report.shrunk.minimal.schedule.ranks, report.shrunk.minimal.schedule.microbatches,
                  VerdictName(report.shrunk.outcome.verdict), report.shrunk.outcome.headline));
  std::string summary = plan.Summary();
  while (!summary.empty() && summary.back() == '\n') summary.pop_back();
  std::string indented;
  for (char ch : summary) indented += ch == '\n' ? std::string("\n  ") : std::string(1, ch);
  say("minimal fault plan (" + report.plan_path + "):\n  " + indented);
  for (int k = 0; k < options.replay_checks; ++k) {
    ++report.replay_checks;
    report.replay_reproduced += RunShell(report.replay + " >/dev/null 2>&1") == report.shrunk.outcome.exit_code;
  }
  if (report.replay_checks > 0) {
    say(fmt::format("the replay command reproduced it {} of {} times", report.replay_reproduced, report.replay_checks));
  }
  say("reproduce with:\n  " + report.replay);
  return report;
}

}  // namespace

CampaignResult RunCampaign(const CampaignOptions& options, CaseRunner& runner, const CampaignEvents& events) {
  CampaignResult result;
  CampaignStats& stats = result.stats;
  const Clock::time_point start = Clock::now();
  for (int64_t number = 0;; ++number) {
    stats.seconds = Since(start);
    if (options.iterations && number >= *options.iterations) {
      result.stopped_by = "iterations";
      break;
    }
    if (options.seconds && stats.seconds >= *options.seconds) {
      result.stopped_by = "time";
      break;
    }
    if (events.should_stop && events.should_stop()) {
      result.stopped_by = "interrupted";
      break;
    }
    CampaignCase c = DrawCase(options.seed, number, options.limits);
    const FaultPlan plan = PlanForCase(c, options.settings);
    const CaseOutcome outcome = RunCase(runner, c, plan, options.settings);
    if (events.should_stop && events.should_stop()) {  // Ctrl-C reached the case's processes too
      result.stopped_by = "interrupted";
      break;
    }
    ++stats.cases;
    KindCount& kind = stats.by_kind[c.schedule.kind];
    ++kind.cases;
    if (c.HasControl()) {
      ++stats.controls;
      stats.controls_caught += !outcome.failed();
    }
    stats.seconds = Since(start);
    if (events.on_case) events.on_case(stats);
    if (!outcome.failed()) continue;
    ++stats.failures;
    ++kind.failures;
    result.failures.push_back(ReportFailure(options, runner, c, outcome, events));
    stats.seconds = Since(start);
    if (static_cast<int>(result.failures.size()) >= options.max_failures) {
      result.stopped_by = "failures";
      break;
    }
  }
  stats.seconds = Since(start);
  return result;
}

std::string CampaignResult::Json(const CampaignOptions& options, const std::string& transport) const {
  using nlohmann::json;
  json j;
  j["format"] = "pipeproof fuzz summary";
  j["version"] = 1;
  j["seed"] = options.seed;
  j["transport"] = transport;
  j["planted_bug"] = PlantedBugName(options.settings.planted_bug);
  const ModelConfig& m = options.settings.model;
  j["model"] = {{"hidden", m.shape.hidden}, {"seq", m.shape.seq}, {"micro_batch_size", m.shape.micro_batch_size},
                {"dtype", DTypeName(m.dtype)}, {"seed", m.seed}};
  j["limits"] = {{"kinds", options.limits.kinds},
                 {"max_ranks", options.limits.max_ranks},
                 {"max_microbatches_per_rank", options.limits.max_microbatches_per_rank},
                 {"max_delay_mean_us", options.limits.max_delay_mean_us},
                 {"controls", options.limits.controls}};
  j["stopped_by"] = stopped_by;
  j["cases"] = stats.cases;
  j["failures"] = stats.failures;
  j["seconds"] = stats.seconds;
  j["cases_per_second"] = stats.CasesPerSecond();
  j["negative_controls"] = {{"cases", stats.controls}, {"caught", stats.controls_caught}};
  j["by_kind"] = json::object();
  for (const auto& [kind, count] : stats.by_kind) j["by_kind"][kind] = {{"cases", count.cases}, {"failures", count.failures}};
  j["failure_reports"] = json::array();
  for (const FailureReport& f : failures) {
    const GenerateOptions& found = f.found.schedule;
    const GenerateOptions& minimal = f.shrunk.minimal.schedule;
    json r;
    r["case"] = f.found.number;
    r["found"] = {{"kind", found.kind},
                  {"ranks", found.ranks},
                  {"microbatches", found.microbatches},
                  {"description", f.found.Describe()},
                  {"verdict", VerdictName(f.first.verdict)},
                  {"headline", f.first.headline}};
    r["minimal"] = {{"kind", minimal.kind},
                    {"ranks", minimal.ranks},
                    {"microbatches", minimal.microbatches},
                    {"delays", DelaySites(f.shrunk.plan).size()},
                    {"verdict", VerdictName(f.shrunk.outcome.verdict)},
                    {"headline", f.shrunk.outcome.headline},
                    {"exit", f.shrunk.outcome.exit_code}};
    r["shrink"] = {{"steps", f.shrunk.steps}, {"runs", f.shrunk.runs}, {"log", f.shrunk.log}};
    r["plan"] = f.plan_path;
    r["replay"] = f.replay;
    r["replay_checks"] = {{"runs", f.replay_checks}, {"reproduced", f.replay_reproduced}};
    j["failure_reports"].push_back(std::move(r));
  }
  return j.dump(2) + "\n";
}

}  // namespace pipeproof
