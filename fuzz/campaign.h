// The delay-fuzz campaign behind `pipeproof fuzz`: it keeps drawing a case (a generated
// schedule's kind, ranks and microbatches, and a fault plan of legal faults, now and then a
// negative control) and runs it on real ranks against the sequential reference. A correct
// executor matches bit for bit under every legal plan and catches every negative control; any
// other outcome is a failure. A failure is shrunk (fewer ranks, fewer microbatches, fewer kinds
// of fault, then fewer and smaller delays) while it persists, its minimal fault plan is written,
// and the one `pipeproof run ... --replay PLAN` command that reproduces it is printed.
//
// Every case is drawn from the campaign seed and its number alone, so a campaign is reproducible
// case by case. Cases run through a CaseRunner: ranks as threads of this process (the threads and
// streams transports, in-process library calls), or a `pipeproof run` command per case where the
// ranks must be processes (MPI, NCCL under mpirun).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "exec/executor.h"
#include "exec/fault_draw.h"
#include "exec/fault_plan.h"
#include "exec/run.h"
#include "schedule/generate.h"
#include "schedule/kinds.h"  // ValidRanks, ValidMicrobatches

namespace pipeproof {

// ---- cases

// What stays the same across a campaign.
struct CaseSettings {
  // Small by default (H 8, L 4, b 2): the campaign wants many cases more than big tensors.
  ModelConfig model = SmallModel();
  double timeout_s = 10;           // the watchdog: a legal plan that hangs is a failure
  double control_timeout_s = 0.5;  // the watchdog of cases with a negative control (drop, kill)
  PlantedBug planted_bug = PlantedBug::kNone;
  // Where the ranks and the reference compute: "cpu", or "cuda" (then make_device makes the CUDA
  // device and the runner's world is the streams transport). Replay commands say --device.
  std::string device = "cpu";
  DeviceFactory make_device;  // null: the CPU device of the model's dtype
  // The streams that run each rank's SEND/RECVs (RunOptions::streams). Replay commands say it.
  StreamLayout streams = StreamLayout::kRank;

  static ModelConfig SmallModel();
};

// One case: the schedule, how its fault plan is drawn, and, once shrinking has made it concrete,
// the plan itself (then used as it is instead of being drawn).
struct CampaignCase {
  int64_t number = 0;  // in its campaign
  GenerateOptions schedule;
  FaultOptions faults;
  std::optional<FaultPlan> plan;

  bool HasControl() const { return faults.corrupt.has_value() || faults.kill_rank.has_value(); }
  // "dualpipe 4x8 (overlap), delay exp:100us at post,deliver; shuffle; poison"
  std::string Describe() const;
};

// The schedule of a case, and the name a fault plan records for it.
Schedule CaseSchedule(const CampaignCase& c);
std::string CaseScheduleName(const CampaignCase& c);
// The case's fault plan: its own, or drawn from its options (InputError when the options do not
// fit the schedule, such as a swap on a schedule that never sends two messages in one unit).
FaultPlan CasePlan(const CampaignCase& c, const CaseSettings& settings);

enum class Verdict {
  kPass,          // matched (legal plan), or its negative control was caught
  kMismatch,      // a legal plan changed the results
  kHang,          // a legal plan hung, or died
  kFault,         // a runtime fault, or a negative control that went unnoticed
};
std::string_view VerdictName(Verdict v);  // "pass", "mismatch", "hang", "fault"

struct CaseOutcome {
  Verdict verdict = Verdict::kPass;
  int exit_code = 0;      // what `pipeproof run` exits with for this outcome
  std::string headline;   // the run's result line
  double seconds = 0;
  bool failed() const { return verdict != Verdict::kPass; }
};

// Runs cases. Implementations: ranks as threads of this process, or a command per case.
class CaseRunner {
 public:
  virtual ~CaseRunner() = default;
  virtual std::string Transport() const = 0;  // "threads", "mpi"
  virtual CaseOutcome Run(const CampaignCase& c, const FaultPlan& plan, const CaseSettings& settings) = 0;
};

// Ranks as threads of this process, in the world `make_world` makes (null: MakeThreadWorld; the
// streams world for GPU cases).
std::unique_ptr<CaseRunner> MakeThreadRunner(std::function<std::unique_ptr<World>()> make_world = nullptr);

// runner.Run, with anything it throws turned into a kFault outcome.
CaseOutcome RunCase(CaseRunner& runner, const CampaignCase& c, const FaultPlan& plan, const CaseSettings& settings);

// How a case runs as a command: `[launcher] pipeproof run --transport T ... --replay PLAN`. Only
// for transports whose ranks are processes (MPI, NCCL under mpirun): process isolation is the
// point there (fuzz/campaign.cpp, CommandRunner, says why).
struct CommandRunnerOptions {
  std::string pipeproof;       // the binary
  std::string transport = "mpi";
  // Put before the binary; "{ranks}" is replaced by the case's ranks.
  std::string launcher = "mpirun --allow-run-as-root --oversubscribe -np {ranks}";
  std::string scratch_dir;     // where plans and reports go (default: a temporary directory)
};
std::unique_ptr<CaseRunner> MakeCommandRunner(const CommandRunnerOptions& options);

// Refuses (InputError) a launcher whose program cannot be started (not on PATH, not executable),
// before the first case: otherwise every case would fail with exit 127 and be shrunk as a bug.
void CheckLauncher(const std::string& launcher);

// The one shell command that runs case `c` with the plan at `plan_path` as `pipeproof run` does:
// the schedule flags, the model, the watchdog, --replay, and the planted bug's variable when one
// is on. `launcher` as in CommandRunnerOptions (empty for threads).
std::string ReplayCommand(const std::string& pipeproof, const CampaignCase& c, const CaseSettings& settings,
                          const std::string& plan_path, const std::string& transport = "threads",
                          const std::string& launcher = "");

// ---- drawing

struct DrawLimits {
  std::vector<std::string> kinds = GeneratorKinds();
  int max_ranks = 4;
  int max_microbatches_per_rank = 3;  // microbatches up to this many times the ranks (at least
                                      // the kind's minimum)
  double max_delay_mean_us = 200;
  double controls = 0;  // the fraction of cases that carry a negative control
};

// Case `number` of the campaign with seed `seed`: the same pair always draws the same case.
CampaignCase DrawCase(uint64_t seed, int64_t number, const DrawLimits& limits);

// Each kind's largest case under `limits` (most ranks, then most microbatches), so that a
// campaign can check before its first case that every case it may draw fits in memory.
std::vector<GenerateOptions> LargestSchedules(const DrawLimits& limits);

// ---- shrinking

struct ShrinkOptions {
  int max_runs = 300;  // candidate runs at most
  int attempts = 2;    // a candidate keeps the failure if one of this many runs shows it
};

struct ShrinkResult {
  CampaignCase minimal;   // with a concrete plan
  FaultPlan plan;
  CaseOutcome outcome;    // of the minimal case
  int steps = 0;          // candidates accepted
  int runs = 0;           // candidate runs made
  std::vector<std::string> log;  // one line per accepted step
};

// Shrinks a failing case while the failure (the same verdict) persists: first the schedule and
// the kinds of fault (the plan redrawn from the options each time), then the concrete plan
// (delays removed in ever smaller chunks, the rest halved, shuffled units put back in order).
ShrinkResult Shrink(const CampaignCase& failing, const CaseOutcome& failure, CaseRunner& runner,
                    const CaseSettings& settings, const ShrinkOptions& options);

// ---- the campaign

struct CampaignOptions {
  uint64_t seed = 1;
  std::optional<int64_t> iterations;  // stop after this many cases
  std::optional<double> seconds;      // or after this long (whichever comes first)
  int max_failures = 1;               // stop after this many failures (each one shrunk)
  DrawLimits limits;
  CaseSettings settings;
  ShrinkOptions shrink;
  std::string out_dir = ".";          // minimal plans go here
  std::string pipeproof = "pipeproof";  // the binary named in replay commands
  std::string launcher;               // before the binary in replay commands (MPI)
  // Runs each replay command this many times to confirm it reproduces the failure (0: never).
  int replay_checks = 0;
};

struct FailureReport {
  CampaignCase found;      // as drawn
  CaseOutcome first;       // its outcome
  ShrinkResult shrunk;
  std::string plan_path;   // the minimal plan
  std::string replay;      // the command
  int replay_checks = 0;   // runs of the command
  int replay_reproduced = 0;  // of them, how many ended like the failure
};

struct KindCount {
  int64_t cases = 0;
  int64_t failures = 0;
};

struct CampaignStats {
  int64_t cases = 0;
  int64_t failures = 0;
  int64_t controls = 0;         // cases with a negative control
  int64_t controls_caught = 0;
  double seconds = 0;
  std::map<std::string, KindCount> by_kind;
  double CasesPerSecond() const { return seconds > 0 ? static_cast<double>(cases) / seconds : 0; }
};

struct CampaignResult {
  CampaignStats stats;
  std::vector<FailureReport> failures;
  std::string stopped_by;  // "iterations", "time", "failures", "interrupted"
  std::string Json(const CampaignOptions& options, const std::string& transport) const;
};

// Progress: called after every case (and while shrinking); `line` is the progress line
// ("1234 cases, 0 failures, 45.2 cases/s, 27s elapsed").
struct CampaignEvents {
  std::function<void(const CampaignStats&)> on_case;
  std::function<void(const std::string&)> on_message;  // failures found, shrink steps, replays
  std::function<bool()> should_stop;                   // asked between cases (Ctrl-C)
};

CampaignResult RunCampaign(const CampaignOptions& options, CaseRunner& runner, const CampaignEvents& events = {});

// "1234 cases, 0 failures, 45.2 cases/s" (the progress line adds the time)
std::string ProgressLine(const CampaignStats& stats);

// Runs `command` through the shell; its exit status (128 + signal when killed).
int RunShell(const std::string& command);

}  // namespace pipeproof
