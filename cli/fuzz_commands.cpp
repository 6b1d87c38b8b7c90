// fuzz: the delay-fuzz campaign (fuzz/campaign.h). Keeps drawing a generated schedule and a
// fault plan, runs it against the reference, and on a failure shrinks it, writes the minimal
// plan and prints the `pipeproof run ... --replay PLAN` command that reproduces it. Exit 0 when
// every case passed, 1 when a failure was found, 2 on bad usage.

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>

#include "cli/command.h"
#include "exec/world.h"
#include "cli/exit_codes.h"
#include "exec/memory_budget.h"
#include "fuzz/campaign.h"
#include "render/progress.h"
#include "schedule/generate.h"
#include "verify/verify.h"

namespace pipeproof {
namespace {

struct FuzzFlags {
  std::optional<int64_t> iterations;
  std::string time;
  uint64_t seed = 1;
  WorldFlags world;
  std::string launcher = "mpirun --allow-run-as-root --oversubscribe -np {ranks}";
  std::vector<std::string> kinds;
  int max_ranks = DrawLimits{}.max_ranks;
  int microbatch_factor = DrawLimits{}.max_microbatches_per_rank;
  double max_delay_us = DrawLimits{}.max_delay_mean_us;
  double controls = 0;
  StageModelFlags model{.defaults = CaseSettings::SmallModel()};
  double timeout = CaseSettings{}.timeout_s;
  int max_failures = 1;
  int shrink_runs = ShrinkOptions{}.max_runs;
  int shrink_attempts = ShrinkOptions{}.attempts;
  int replay_checks = 3;
  std::string out_dir = ".";
  std::string summary;
  double progress_interval = 10;
  bool quiet = false;
  std::string plant;  // switch on a planted executor bug (the harness's self-test)
};

// "90", "90s", "15m", "2h" as seconds.
double ParseDuration(const std::string& text) {
  double scale = 1;
  std::string number = text;
  if (!number.empty() && std::string("smh").find(number.back()) != std::string::npos) {
    scale = number.back() == 's' ? 1 : number.back() == 'm' ? 60 : 3600;
    number.pop_back();
  }
  try {
    size_t used = 0;
    const double v = std::stod(number, &used);
    if (used == number.size() && v > 0 && std::isfinite(v)) return v * scale;
  } catch (const std::exception&) {
  }
  throw InputError(fmt::format("--time '{}': expected a duration such as 90s, 15m or 2h", text));
}

void DeclareFuzz(CLI::App* cmd, FuzzFlags& f) {
  cmd->add_option("-n,--iterations", f.iterations, "stop after this many cases")->check(IntegerIn(1, INT64_MAX));
  cmd->add_option("--time", f.time, "stop after this long (90s, 15m, 2h); without either, run until Ctrl-C");
  cmd->add_option("--seed", f.seed, "campaign seed: the same seed draws the same cases")
      ->check(SeedValue())
      ->capture_default_str();
  f.world.Add(cmd, "; mpi and nccl run every case as `mpirun -np R pipeproof run --transport mpi (nccl)`");
  cmd->add_option("--launcher", f.launcher, "with --transport mpi: the launcher; {ranks} becomes the case's ranks")
      ->capture_default_str();
  cmd->add_option("--kinds", f.kinds, "schedule kinds to draw from (default: every generator)")
      ->delimiter(',')
      ->check(CLI::IsMember(GeneratorKinds()));
  cmd->add_option("--max-ranks", f.max_ranks, "most ranks in a case")->check(IntegerIn(2, 64))->capture_default_str();
  cmd->add_option("--max-microbatches-per-rank", f.microbatch_factor,
                  "most microbatches per rank (at least each kind's minimum)")
      ->check(IntegerIn(1, 64))
      ->capture_default_str();
  cmd->add_option("--max-delay", f.max_delay_us, "largest mean delay in microseconds (means are drawn log-uniformly)")
      ->check(NumberIn(2, 1e6))
      ->capture_default_str();
  cmd->add_option("--controls", f.controls,
                  "fraction of cases with a negative control (bitflip, swap, drop, kill) that must be caught")
      ->check(NumberIn(0, 1))
      ->capture_default_str();
  f.model.Add(cmd);
  cmd->add_option("--timeout", f.timeout, "seconds without progress before a case is declared hung")
      ->check(NumberIn(0.01, 86400))
      ->capture_default_str();
  cmd->add_option("--max-failures", f.max_failures, "stop after this many failures (each is shrunk)")
      ->check(IntegerIn(1, 1000000))
      ->capture_default_str();
  cmd->add_option("--shrink-runs", f.shrink_runs, "most runs spent shrinking one failure")
      ->check(IntegerIn(0, 1000000))
      ->capture_default_str();
  cmd->add_option("--shrink-attempts", f.shrink_attempts,
                  "runs of each shrink candidate (a timing-dependent failure may need more than one)")
      ->check(IntegerIn(1, 1000))
      ->capture_default_str();
  cmd->add_option("--replay-checks", f.replay_checks, "run each printed replay command this often to confirm it")
      ->check(IntegerIn(0, 1000))
      ->capture_default_str();
  cmd->add_option("--out", f.out_dir, "directory for the minimal fault plans")->capture_default_str();
  cmd->add_option("--summary", f.summary, "write the campaign's results as JSON to this file");
  cmd->add_option("--progress-interval", f.progress_interval,
                  "seconds between progress lines when the output is not a terminal")
      ->check(NumberIn(0.01, 86400))
      ->capture_default_str();
  cmd->add_flag("-q,--quiet", f.quiet, "no progress lines");
  // The harness's self-test, never on by default: switches on a known executor bug.
  cmd->add_option("--plant", f.plant,
                  "self-test of the harness: switch on a known executor bug and see the campaign find "
                  "and shrink it (never on otherwise)")
      ->check(CLI::IsMember({"release-send-early", "skip-arrival-wait", "skip-compute-event", "ignore-wait-send"}));
}

// Cases of a transport with ranks as processes run as `pipeproof run` commands under the launcher.
// `spec`: where the cases run (f.world's, checked); its ranks as processes run each case as a
// command under the launcher.
CampaignOptions OptionsFrom(const FuzzFlags& f, const WorldSpec& spec) {
  CampaignOptions o;
  o.seed = f.seed;
  o.iterations = f.iterations;
  if (!f.time.empty()) o.seconds = ParseDuration(f.time);
  o.max_failures = f.max_failures;
  if (!f.kinds.empty()) o.limits.kinds = f.kinds;
  o.limits.max_ranks = f.max_ranks;
  o.limits.max_microbatches_per_rank = f.microbatch_factor;
  o.limits.max_delay_mean_us = f.max_delay_us;
  o.limits.controls = f.controls;
  o.settings.model = f.model.Config();
  o.settings.timeout_s = f.timeout;
  o.settings.device = spec.device;
  o.settings.streams = spec.streams;
  o.settings.make_device = DevicesFor(spec);
  if (!f.plant.empty()) o.settings.planted_bug = *PlantedBugFromName(f.plant);
  o.shrink.max_runs = f.shrink_runs;
  o.shrink.attempts = f.shrink_attempts;
  o.replay_checks = f.replay_checks;
  o.out_dir = f.out_dir;
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  o.pipeproof = error ? "pipeproof" : self.string();
  if (TransportOf(spec).ranks_are_processes) o.launcher = f.launcher;
  return o;
}

std::atomic<bool> g_interrupted{false};

// Refuses, before the first case, a campaign whose largest cases cannot fit in memory (exit 2),
// rather than one that the OOM killer ends in the middle.
void CheckLargestCasesFit(const CampaignOptions& options, bool all_ranks_here) {
  for (const GenerateOptions& g : LargestSchedules(options.limits)) {
    const Schedule schedule = Generate(g);
    VerifyOptions verify;
    verify.use_z3 = false;
    const MemoryReport memory = Verify(schedule, verify).memory;
    CheckRunFitsInMemory(EstimateRunMemory(schedule, options.settings.model, memory.peak,
                                           memory.stash_peak, all_ranks_here),
                         options.settings.model);
  }
}

int Fuzz(const FuzzFlags& f) {
  const WorldSpec spec = f.world.Spec(f.model.dtype);
  CheckWorldSpec(spec);  // before the first case
  const CampaignOptions options = OptionsFrom(f, spec);
  const bool as_commands = TransportOf(spec).ranks_are_processes;
  if (spec.device == "cpu") CheckLargestCasesFit(options, !as_commands);
  std::unique_ptr<CaseRunner> runner;
  if (as_commands) {
    CheckLauncher(f.launcher);
    CommandRunnerOptions c;
    c.pipeproof = options.pipeproof;
    c.transport = spec.transport;
    c.launcher = f.launcher;
    runner = MakeCommandRunner(c);
  } else {
    runner = MakeThreadRunner(WorldMaker(spec));
  }
  if (options.settings.planted_bug != PlantedBug::kNone) {
    std::cout << fmt::format("fuzz: PLANTED EXECUTOR BUG {} is on (the harness's self-test)\n",
                             PlantedBugName(options.settings.planted_bug));
  }
  std::cout << fmt::format("fuzz: seed {}, {} transport{}, kinds {}, up to {} ranks; {}\n", options.seed,
                           runner->Transport(),
                           f.world.streams == "rank" ? "" : fmt::format(" (--streams {})", f.world.streams),
                           fmt::join(options.limits.kinds, ","), options.limits.max_ranks,
                           options.iterations ? fmt::format("{} cases", *options.iterations)
                           : options.seconds  ? fmt::format("for {}", f.time)
                                              : std::string("until Ctrl-C"));
  // On stdout, with the campaign's messages: a live line on a terminal, a line every
  // --progress-interval seconds otherwise.
  ProgressOptions progress_options;
  progress_options.mode = f.quiet ? ProgressMode::kOff : ProgressMode::kAuto;
  progress_options.out = &std::cout;
  progress_options.fd = STDOUT_FILENO;
  progress_options.quiet_s = f.progress_interval;
  progress_options.plain_every_s = f.progress_interval;
  Progress progress("fuzz", progress_options);
  CampaignEvents events;
  events.on_case = [&](const CampaignStats& stats) { progress.Update(ProgressLine(stats)); };
  events.on_message = [&](const std::string& text) { progress.Print(text); };
  events.should_stop = [] { return g_interrupted.load(); };
  g_interrupted = false;
  auto previous = std::signal(SIGINT, [](int) { g_interrupted = true; });
  const CampaignResult result = RunCampaign(options, *runner, events);
  std::signal(SIGINT, previous);
  progress.Finish();
  std::cout << fmt::format("fuzz: {} cases in {:.1f}s ({:.1f} cases/s), {} failures{}; stopped by {}\n",
                           result.stats.cases, result.stats.seconds, result.stats.CasesPerSecond(),
                           result.stats.failures,
                           result.stats.controls ? fmt::format(", {} of {} negative controls caught",
                                                               result.stats.controls_caught, result.stats.controls)
                                                 : "",
                           result.stopped_by);
  if (!f.summary.empty()) WriteOutput(f.summary, result.Json(options, runner->Transport()));
  return result.failures.empty() ? kExitOk : kExitCheckFailed;
}

}  // namespace

void AddFuzzCommands(CLI::App& app, Commands& commands) {
  AddCommand<FuzzFlags>(
      app, commands, "fuzz",
      "Fuzz the executor: keep drawing a schedule (kind, ranks, microbatches) and a fault plan, run it "
      "against the reference; shrink any failure and print the `pipeproof run --replay` command that "
      "reproduces it. Exit 0 no failure, 1 a failure found, 2 bad usage",
      DeclareFuzz, Fuzz);
}

}  // namespace pipeproof
