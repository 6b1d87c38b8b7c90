// The delay-fuzz campaign: drawing, shrinking, summaries, and the planted-bug proof (a real
// executor bug switched on is found within a bounded number of cases, shrunk, and reproduced by
// the printed `pipeproof run --replay` command). `pipeproof fuzz` itself is tested in
// cli/fuzz_command_test.cpp.
#include "fuzz/campaign.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <set>

#include "fuzz/process_test_util.h"

namespace pipeproof {
namespace {

using testing::RunCommand;

using testing::Has;
using testing::ScratchDir;

TEST(DrawCaseTest, TheSameSeedAndNumberDrawTheSameValidCase) {
  DrawLimits limits;
  limits.controls = 0.3;
  std::set<std::string> kinds;
  int controls = 0;
  for (int64_t n = 0; n < 300; ++n) {
    const CampaignCase a = DrawCase(7, n, limits);
    const CampaignCase b = DrawCase(7, n, limits);
    EXPECT_EQ(a.Describe(), b.Describe());
    EXPECT_EQ(a.faults.seed, b.faults.seed);
    EXPECT_LE(a.schedule.ranks, limits.max_ranks);
    kinds.insert(a.schedule.kind);
    controls += a.HasControl();
    CampaignCase c = a;
    if (c.faults.corrupt == CorruptKind::kSwap) c.faults.corrupt = CorruptKind::kBitflip;
    const FaultPlan plan = CasePlan(c, CaseSettings{});  // the schedule generates, the plan fits
    EXPECT_EQ(plan.HasNegativeControl(), a.HasControl());
  }
  EXPECT_EQ(kinds.size(), GeneratorKinds().size());
  EXPECT_GT(controls, 50);
  EXPECT_LT(controls, 130);
  EXPECT_NE(DrawCase(7, 1, limits).Describe() + std::to_string(DrawCase(7, 1, limits).faults.seed),
            DrawCase(8, 1, limits).Describe() + std::to_string(DrawCase(8, 1, limits).faults.seed));
}

// A runner whose "bug" shows only when rank 1's fourth communication op is posted at least 50us
// late on a schedule of two ranks or more: the shrinker must find exactly that.
class SyntheticBugRunner final : public CaseRunner {
 public:
  std::string Transport() const override { return "synthetic"; }
  CaseOutcome Run(const CampaignCase& c, const FaultPlan& plan, const CaseSettings&) override {
    ++runs;
    CaseOutcome out;
    const RankFaults& f = plan.Rank(1);
    if (c.schedule.ranks >= 2 && f.post_delay_us.size() > 3 && f.post_delay_us[3] >= 50) {
      out.verdict = Verdict::kMismatch;
      out.exit_code = 1;
      out.headline = "MISMATCH (synthetic)";
    }
    return out;
  }
  int runs = 0;
};

TEST(ShrinkTest, FindsTheOneDelayThatMattersAndHalvesIt) {
  CampaignCase c;
  c.schedule.kind = "dualpipe";
  c.schedule.ranks = 4;
  c.schedule.microbatches = 12;
  c.faults.seed = 5;
  DelaySpec d;
  d.distribution = DelayDistribution::kUniform;
  d.mean_us = 1000;
  c.faults.delay = d;
  c.faults.shuffle = true;
  c.faults.poison = true;
  c.faults.stragglers.push_back({3, 2});
  CaseSettings settings;
  const FaultPlan plan = CasePlan(c, settings);
  SyntheticBugRunner runner;
  const CaseOutcome first = runner.Run(c, plan, settings);
  ASSERT_TRUE(first.failed()) << "the drawn delay is " << plan.ranks[1].post_delay_us[3];
  ShrinkOptions options;
  options.attempts = 1;
  options.max_runs = 400;
  const ShrinkResult r = Shrink(c, first, runner, settings, options);
  EXPECT_EQ(r.outcome.verdict, Verdict::kMismatch);
  EXPECT_EQ(r.minimal.schedule.ranks, 2);
  EXPECT_EQ(r.minimal.schedule.microbatches, 4);
  EXPECT_FALSE(r.minimal.faults.shuffle);
  EXPECT_FALSE(r.plan.poison);
  int delays = 0;
  for (const RankFaults& f : r.plan.ranks) {
    for (uint32_t v : f.post_delay_us) delays += v != 0;
    for (uint32_t v : f.deliver_delay_us) delays += v != 0;
    for (uint32_t v : f.compute_delay_us) delays += v != 0;
    EXPECT_EQ(f.straggler, 1);
    EXPECT_TRUE(f.unit_orders.empty());
  }
  EXPECT_EQ(delays, 1);
  ASSERT_GT(r.plan.ranks[1].post_delay_us.size(), 3u);
  EXPECT_GE(r.plan.ranks[1].post_delay_us[3], 50u);
  EXPECT_LT(r.plan.ranks[1].post_delay_us[3], 100u);  // halved while the failure lasted
  EXPECT_LE(r.runs, options.max_runs);
  EXPECT_EQ(r.runs, runner.runs - 1);
  EXPECT_FALSE(r.log.empty());
}

TEST(ShrinkTest, StaysWithinItsRunBudget) {
  CampaignCase c = DrawCase(3, 0, DrawLimits{});
  c.faults.delay = DelaySpec::Parse("uniform:1000us");
  SyntheticBugRunner runner;
  CaseOutcome failing;
  failing.verdict = Verdict::kMismatch;
  ShrinkOptions options;
  options.max_runs = 5;
  const ShrinkResult r = Shrink(c, failing, runner, CaseSettings{}, options);
  EXPECT_LE(r.runs, 5);
}

TEST(ReplayCommandTest, NamesTheScheduleTheModelThePlanAndThePlantedBug) {
  CampaignCase c;
  c.schedule.kind = "interleaved-1f1b";
  c.schedule.ranks = 2;
  c.schedule.microbatches = 4;
  c.schedule.virtual_stages = 3;
  CaseSettings s;
  EXPECT_EQ(ReplayCommand("/bin/pipeproof", c, s, "/tmp/p lan.json"),
            "/bin/pipeproof run --kind interleaved-1f1b -r 2 -m 4 --virtual-stages 3 --hidden 8 --seq 4 "
            "--micro-batch-size 2 --dtype f64 --model-seed 0 --timeout 10 --replay '/tmp/p lan.json'");
  c.schedule.kind = "dualpipe";
  c.schedule.overlap = false;
  s.planted_bug = PlantedBug::kReleaseSendEarly;
  EXPECT_EQ(ReplayCommand("pipeproof", c, s, "p.json", "mpi", "mpirun -np {ranks}"),
            "PIPEPROOF_PLANTED_BUG=release-send-early mpirun -np 2 pipeproof run --transport mpi --kind dualpipe "
            "-r 2 -m 4 --no-overlap --hidden 8 --seq 4 --micro-batch-size 2 --dtype f64 --model-seed 0 "
            "--timeout 10 --replay p.json");
  // A campaign's stream layout and a case's PyTorch-style WAIT_SENDs are part of the command.
  c.schedule.kind = "1f1b";
  c.schedule.wait_sends = true;
  s.planted_bug = PlantedBug::kNone;
  s.streams = StreamLayout::kPair;
  EXPECT_EQ(ReplayCommand("pipeproof", c, s, "p.json"),
            "pipeproof run --streams pair --kind 1f1b -r 2 -m 4 --wait-sends --hidden 8 --seq 4 "
            "--micro-batch-size 2 --dtype f64 --model-seed 0 --timeout 10 --replay p.json");
}

// GPU cases run on the streams transport, which `pipeproof run --device cuda` picks by itself.
TEST(ReplayCommandTest, GpuCasesSayTheDeviceNotTheStreamsTransport) {
  CampaignCase c;
  c.schedule.kind = "dualpipe";
  c.schedule.ranks = 4;
  c.schedule.microbatches = 8;
  CaseSettings s;
  s.model.dtype = DType::kBF16;
  s.device = "cuda";
  s.planted_bug = PlantedBug::kSkipComputeEvent;
  EXPECT_EQ(ReplayCommand("pipeproof", c, s, "p.json", "streams"),
            "PIPEPROOF_PLANTED_BUG=skip-compute-event pipeproof run --device cuda --kind dualpipe -r 4 -m 8 "
            "--hidden 8 --seq 4 --micro-batch-size 2 --dtype bf16 --model-seed 0 --timeout 10 --replay p.json");
}

CampaignOptions SmallCampaign(uint64_t seed, const std::string& out_dir) {
  CampaignOptions o;
  o.seed = seed;
  o.iterations = 40;
  o.out_dir = out_dir;
  o.pipeproof = PIPEPROOF_BINARY;
  return o;
}

TEST(CampaignTest, ACorrectExecutorPassesEveryCaseAndTheSummarySaysSo) {
  CampaignOptions o = SmallCampaign(11, ScratchDir("clean"));
  o.limits.controls = 0.2;
  o.settings.control_timeout_s = 0.2;
  std::unique_ptr<CaseRunner> runner = MakeThreadRunner();
  int progress_calls = 0;
  CampaignEvents events;
  events.on_case = [&](const CampaignStats&) { ++progress_calls; };
  const CampaignResult r = RunCampaign(o, *runner, events);
  EXPECT_EQ(r.stats.cases, 40);
  EXPECT_EQ(r.stats.failures, 0);
  EXPECT_EQ(r.stopped_by, "iterations");
  EXPECT_EQ(progress_calls, 40);
  EXPECT_GT(r.stats.controls, 0);
  EXPECT_EQ(r.stats.controls_caught, r.stats.controls);
  const nlohmann::json j = nlohmann::json::parse(r.Json(o, runner->Transport()));
  EXPECT_EQ(j["format"], "pipeproof fuzz summary");
  EXPECT_EQ(j["cases"], 40);
  EXPECT_EQ(j["failures"], 0);
  EXPECT_EQ(j["seed"], 11);
  EXPECT_EQ(j["planted_bug"], "none");
  EXPECT_TRUE(j["failure_reports"].empty());
  int64_t by_kind = 0;
  for (const auto& [kind, count] : j["by_kind"].items()) by_kind += count["cases"].get<int64_t>();
  EXPECT_EQ(by_kind, 40);
  EXPECT_GT(j["cases_per_second"].get<double>(), 0);
  EXPECT_NE(ProgressLine(r.stats).find("40 cases, 0 failures"), std::string::npos);
}

// The planted-bug proof. With a real executor bug switched on, the campaign must find a failure
// within kBound cases for every seed, shrink it to two ranks, and the printed command must
// reproduce it (and, without the bug, match). Measured over seeds 1-20 with the default limits:
// release-send-early is found by case 1-2, on DualPipe/DualPipeV alone (where it shows only
// with poisoned buffers) by case 1-7, skip-arrival-wait by case 1-7; ignore-wait-send (on the
// lowered kinds, half of whose cases carry PyTorch's WAIT_SENDs) by case 1-5 over seeds 1-5.
constexpr int kBound = 20;
// Runs of the replay command, of which one must reproduce: every planted bug is a race (a freed
// or unawaited buffer against the copy that reads it), which a replay on a loaded machine
// (ctest -j) sometimes loses; ignore-wait-send about one time in ten.
constexpr int kReplays = 3;

struct PlantedCase {
  PlantedBug bug;
  std::vector<std::string> kinds;
};

TEST(PlantedBugTest, EveryPlantedBugIsFoundShrunkAndReplayed) {
  for (const PlantedCase& planted : std::vector<PlantedCase>{
           {PlantedBug::kReleaseSendEarly, GeneratorKinds()},
           {PlantedBug::kReleaseSendEarly, {"dualpipe", "dualpipev"}},
           {PlantedBug::kSkipArrivalWait, GeneratorKinds()},
           {PlantedBug::kIgnoreWaitSend, {"gpipe", "1f1b", "interleaved-1f1b", "zb1p"}}}) {
    const std::string name(PlantedBugName(planted.bug));
    for (uint64_t seed : {1, 2, 3, 4, 5}) {
      CampaignOptions o = SmallCampaign(seed, ScratchDir("planted-" + name + std::to_string(seed)));
      o.iterations = kBound;
      o.limits.kinds = planted.kinds;
      o.settings.planted_bug = planted.bug;
      o.replay_checks = kReplays;
      std::unique_ptr<CaseRunner> runner = MakeThreadRunner();
      const CampaignResult r = RunCampaign(o, *runner);
      ASSERT_EQ(r.failures.size(), 1u) << name << " seed " << seed << ": no failure in " << kBound << " cases";
      const FailureReport& f = r.failures.front();
      std::printf("[ planted  ] %s (%zu kinds), seed %d: found in case %d, shrunk from %s to %s in %d runs\n",
                  name.c_str(), planted.kinds.size(), static_cast<int>(seed), static_cast<int>(f.found.number) + 1,
                  f.found.Describe().c_str(), f.shrunk.minimal.Describe().c_str(), f.shrunk.runs);
      EXPECT_EQ(f.shrunk.minimal.schedule.ranks, 2);
      EXPECT_LE(f.shrunk.minimal.schedule.microbatches, f.found.schedule.microbatches);
      EXPECT_GE(f.replay_reproduced, 1) << f.replay;
      EXPECT_TRUE(Has(f.replay, "PIPEPROOF_PLANTED_BUG=" + name + " ")) << f.replay;
      EXPECT_TRUE(Has(f.replay, "--replay " + f.plan_path)) << f.replay;
      EXPECT_TRUE(std::filesystem::exists(f.plan_path));
      // The same command without the planted bug matches: the plan alone is legal.
      const std::string clean = f.replay.substr(f.replay.find(' ') + 1);
      EXPECT_EQ(RunCommand(clean).status, 0) << clean;
    }
  }
}

TEST(PlantedBugTest, OnlyTheVariableOrTheOptionSwitchesOneOn) {
  ASSERT_EQ(std::getenv(kPlantedBugVariable), nullptr);
  EXPECT_EQ(PlantedBugFromEnvironment(), PlantedBug::kNone);
  EXPECT_EQ(PlantedBugFromName("release-send-early"), PlantedBug::kReleaseSendEarly);
  EXPECT_EQ(PlantedBugFromName("skip-arrival-wait"), PlantedBug::kSkipArrivalWait);
  EXPECT_FALSE(PlantedBugFromName("everything").has_value());
}

}  // namespace
}  // namespace pipeproof
