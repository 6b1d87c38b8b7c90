// The executor end to end on threads: schedules of every kind and several sizes, under legal
// faults, bit-identical to the reference; every negative control caught and named; hangs and dead
// ranks stopped within the timeout, with every rank's dump.
#include "exec/run.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>

#include "exec/fault_draw.h"
#include "schedule/formats.h"
#include "schedule/generate.h"
#include "schedule/lower.h"

namespace pipeproof {
namespace {

ModelConfig SmallModel(DType dtype = DType::kF64) {
  ModelConfig c;
  c.shape = {8, 4, 2};
  c.dtype = dtype;
  c.seed = 3;
  return c;
}

RunOptions Options(const Schedule& s, const FaultOptions& faults, const ModelConfig& model, double timeout,
                   StreamLayout streams = StreamLayout::kRank) {
  RunOptions o;
  o.streams = streams;
  o.exec.model = model;
  o.policy = ComparePolicy::Exact();
  o.faults = DrawFaultPlan(PlanRun(s), faults, MessageFormatOf(model), s.kind);
  o.watchdog.timeout_s = timeout;
  o.schedule_name = s.kind;
  return o;
}

RunOutcome Check(const Schedule& s, const FaultOptions& faults = {}, ModelConfig model = SmallModel(),
                 double timeout = 20, StreamLayout streams = StreamLayout::kRank) {
  auto world = MakeThreadWorld();
  return RunAndCompare(s, Options(s, faults, model, timeout, streams), *world);
}

// Legal faults of every kind, strong enough to reorder everything that can be reordered.
FaultOptions LegalFaults(uint64_t seed, int ranks = 2) {
  FaultOptions f;
  f.seed = seed;
  f.delay = DelaySpec::Parse(seed % 2 ? "exp:150us" : "heavy:100us");
  f.shuffle = true;
  f.poison = true;
  f.stragglers.push_back({static_cast<int>(seed % ranks), 3});
  return f;
}

struct Size {
  std::string kind;
  int ranks;
  int microbatches;
  int virtual_stages = 2;
  bool overlap = true;
};

std::string Name(const Size& s) {
  return fmt::format("{} {}x{}{}{}", s.kind, s.ranks, s.microbatches,
                     s.kind == "interleaved-1f1b" ? fmt::format(" v{}", s.virtual_stages) : "",
                     s.overlap ? "" : " no-overlap");
}

Schedule Make(const Size& s) {
  return Generate({.kind = s.kind, .ranks = s.ranks, .microbatches = s.microbatches,
                   .virtual_stages = s.virtual_stages, .overlap = s.overlap});
}

const std::vector<Size> kSizes = {
    {"dualpipe", 2, 4},         {"dualpipe", 4, 8},         {"dualpipe", 4, 10, 2, false},
    {"dualpipe", 6, 12},        {"dualpipe", 8, 20},        {"dualpipev", 1, 2},
    {"dualpipev", 2, 4},        {"dualpipev", 3, 7},        {"dualpipev", 4, 9, 2, false},
    {"dualpipev", 4, 8},        {"1f1b", 1, 3},             {"1f1b", 2, 5},
    {"1f1b", 4, 8},             {"zb1p", 2, 2},             {"zb1p", 3, 6},
    {"zb1p", 4, 9},             {"interleaved-1f1b", 2, 4}, {"interleaved-1f1b", 3, 6, 3},
    {"interleaved-1f1b", 4, 8}, {"gpipe", 3, 4},
};

TEST(RunTest, EveryKindIsBitIdenticalUnderLegalFaults) {
  for (const Size& size : kSizes) {
    const Schedule s = Make(size);
    for (uint64_t seed : {1, 2}) {
      const RunOutcome o = Check(s, LegalFaults(seed, s.ranks));
      EXPECT_EQ(o.status, RunStatus::kMatch) << Name(size) << " seed " << seed << "\n" << o.Text();
      ASSERT_TRUE(o.comparison);
      EXPECT_EQ(o.comparison->tensors.size(), 1u + s.microbatches + 2u * s.ParamBlocks());
    }
  }
}

TEST(RunTest, FloatRunsAreBitIdenticalToo) {
  for (const Size& size : std::vector<Size>{{"dualpipe", 4, 8}, {"zb1p", 3, 5}, {"dualpipev", 2, 5}}) {
    const RunOutcome o = Check(Make(size), LegalFaults(3), SmallModel(DType::kF32));
    EXPECT_EQ(o.status, RunStatus::kMatch) << Name(size) << "\n" << o.Text();
  }
}

TEST(RunTest, ToleranceModeComparesWithThePlainMicrobatchOrderReference) {
  const Schedule s = Make({"dualpipe", 4, 8});
  RunOptions o = Options(s, LegalFaults(4), SmallModel(DType::kF32), 20);
  o.policy = ComparePolicy::Tolerance(DType::kF32);
  auto world = MakeThreadWorld();
  const RunOutcome out = RunAndCompare(s, o, *world);
  EXPECT_EQ(out.status, RunStatus::kMatch) << out.Text();
  EXPECT_NE(out.comparison->Text().find("tolerance (rtol 0.0001, atol 1e-05 x max|ref|)"), std::string::npos);
}

TEST(RunTest, LoweredComputeOnlySchedulesRun) {
  const Schedule compute = ReadScheduleFile(std::string(PIPEPROOF_TESTDATA_DIR) + "/peers/pytorch/dualpipev_4rank_10mb.csv");
  const LoweringResult lowered = Lower(compute);
  ASSERT_TRUE(lowered.schedule) << lowered.problem;
  const RunOutcome o = Check(*lowered.schedule, LegalFaults(5));
  EXPECT_EQ(o.status, RunStatus::kMatch) << o.Text();
}

TEST(RunTest, BuffersAreFreedAsTheScheduleGoes) {
  const Schedule s = Make({"dualpipe", 4, 8});
  const RunOutcome o = Check(s, LegalFaults(6));
  ASSERT_EQ(o.status, RunStatus::kMatch) << o.Text();
  const ModelShape shape = SmallModel().shape;
  const int64_t weights = 2 * 4 * int64_t{shape.hidden} * shape.hidden * 8;  // W1 and W2 in f64
  const int64_t chunk = int64_t{shape.Rows()} * shape.hidden * 8;
  for (const RankResult& r : o.execution.ranks) {
    // Every rank holds two blocks of DualPipe: at the end only their weights remain.
    EXPECT_EQ(r.memory.live_bytes, 2 * weights) << "rank " << r.rank;
    // At the peak: weights, gradient accumulators, and the live activations (each at most
    // x + h + a = 9 rows of H per microbatch chunk) of at most S_route + 1 = 5 chunks, plus
    // messages and temporaries.
    EXPECT_LT(r.memory.peak_bytes, 4 * weights + 5 * 9 * chunk + 4 * weights) << "rank " << r.rank;
    EXPECT_GT(r.memory.reuses, r.memory.allocations / 2) << "the pool recycles freed buffers";
  }
}

TEST(RunTest, ReplayingARecordedPlanRunsTheSameFaults) {
  const Schedule s = Make({"dualpipev", 3, 6});
  const RunOptions first = Options(s, LegalFaults(7), SmallModel(), 20);
  RunOptions replay = first;
  replay.faults = ParseFaultPlan(first.faults.Json(), "plan.json");
  EXPECT_EQ(replay.faults, first.faults);
  auto world = MakeThreadWorld();
  const RunOutcome a = RunAndCompare(s, first, *world);
  const RunOutcome b = RunAndCompare(s, replay, *world);
  EXPECT_EQ(a.status, RunStatus::kMatch);
  EXPECT_EQ(b.status, RunStatus::kMatch);
  EXPECT_EQ(a.faults_summary, b.faults_summary);
  EXPECT_EQ(AssembleResults(s, first.exec.model, a.execution.ranks),
            AssembleResults(s, first.exec.model, b.execution.ranks));
}

// ---- negative controls ----

FaultOptions Control(std::optional<CorruptKind> corrupt, std::optional<int> kill, uint64_t seed) {
  FaultOptions f;
  f.seed = seed;
  f.corrupt = corrupt;
  f.kill_rank = kill;
  return f;
}

TEST(NegativeControlTest, BitflipsAndSwapsShowUpAsMismatches) {
  for (const Size& size : std::vector<Size>{{"dualpipe", 4, 8}, {"dualpipev", 3, 6}, {"zb1p", 3, 5}, {"interleaved-1f1b", 2, 4}}) {
    for (uint64_t seed : {1, 2, 3}) {
      const RunOutcome o = Check(Make(size), Control(CorruptKind::kBitflip, {}, seed));
      EXPECT_EQ(o.status, RunStatus::kMismatch) << Name(size) << "\n" << o.Text();
      EXPECT_EQ(o.ExitCode(), 1);
      EXPECT_TRUE(o.control_caught);
      EXPECT_NE(o.negative_control.find("bitflip of bit"), std::string::npos) << o.negative_control;
      EXPECT_NE(o.negative_control.find("caught, the results differ"), std::string::npos);
    }
  }
  for (const Size& size : std::vector<Size>{{"dualpipe", 4, 8}, {"dualpipe", 6, 12}, {"dualpipev", 3, 6}}) {
    const RunOutcome o = Check(Make(size), Control(CorruptKind::kSwap, {}, 9));
    EXPECT_EQ(o.status, RunStatus::kMismatch) << Name(size) << "\n" << o.Text();
    EXPECT_NE(o.negative_control.find("swap of messages"), std::string::npos);
    EXPECT_TRUE(o.control_caught);
  }
}

void ExpectHangWithDump(const RunOutcome& o, double timeout, double seconds, const std::string& what) {
  EXPECT_EQ(o.status, RunStatus::kHang) << what << "\n" << o.Text();
  EXPECT_EQ(o.ExitCode(), 3);
  EXPECT_LT(seconds, timeout + 2) << what;
  EXPECT_NE(o.headline.find("no rank has made progress"), std::string::npos) << o.headline;
  const std::string text = o.Text();
  for (int r = 0; r < static_cast<int>(o.execution.snapshots.size()); ++r) {
    EXPECT_NE(text.find(fmt::format("rank {}: ", r)), std::string::npos) << what << ": no dump for rank " << r;
  }
  EXPECT_NE(text.find("last "), std::string::npos) << text;
}

TEST(NegativeControlTest, DropsAndKillsEndAsHangsWithADump) {
  const double timeout = 0.3;
  for (const Size& size : std::vector<Size>{{"dualpipe", 4, 8}, {"dualpipev", 2, 4}, {"1f1b", 3, 5}, {"zb1p", 3, 4}}) {
    for (int control = 0; control < 2; ++control) {
      const Schedule s = Make(size);
      const FaultOptions f = control == 0 ? Control(CorruptKind::kDrop, {}, 4) : Control({}, s.ranks - 1, 4);
      const auto start = Clock::now();
      const RunOutcome o = Check(s, f, SmallModel(), timeout);
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      ExpectHangWithDump(o, timeout, seconds, Name(size));
      EXPECT_TRUE(o.control_caught);
      EXPECT_NE(o.negative_control.find("caught, the run hung"), std::string::npos) << o.negative_control;
      if (control == 1) {
        EXPECT_NE(o.Text().find(fmt::format("rank {}: dead for", s.ranks - 1)), std::string::npos) << o.Text();
        EXPECT_NE(o.Text().find("stopped dead before it by the fault plan"), std::string::npos);
      } else {
        EXPECT_NE(o.Text().find("posted, no match yet"), std::string::npos) << o.Text();
      }
    }
  }
}

// Killed at its very last action, a rank leaves nothing for its peers to wait for: they finish,
// but the run is still incomplete and must end as a dead rank, not as results.
TEST(NegativeControlTest, ARankKilledAtItsLastActionIsStillADeadRank) {
  const Schedule s = Make({"dualpipe", 2, 4});
  RunOptions o = Options(s, {}, SmallModel(), 5);
  const RunPlan plan = PlanRun(s);
  o.faults.kill = Kill{1, plan.Actions(1) - 1};
  auto world = MakeThreadWorld();
  const auto start = Clock::now();
  const RunOutcome out = RunAndCompare(s, o, *world);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 2);
  EXPECT_EQ(out.status, RunStatus::kHang) << out.Text();
  EXPECT_NE(out.headline.find("dead rank: rank 1"), std::string::npos) << out.headline;
  EXPECT_TRUE(out.control_caught);
}

// A planted executor bug (a send's buffer freed when its unit is posted rather than when it
// completes) must not go unnoticed: with poisoning the receiver gets NaNs.
TEST(NegativeControlTest, APlantedEarlyReleaseIsCaughtByPoisoning) {
  for (const Size& size : std::vector<Size>{{"dualpipe", 4, 8}, {"1f1b", 3, 5}}) {
    const Schedule s = Make(size);
    FaultOptions f;
    f.poison = true;
    RunOptions o = Options(s, f, SmallModel(), 20);
    o.exec.planted_bug = PlantedBug::kReleaseSendEarly;
    auto world = MakeThreadWorld();
    const RunOutcome out = RunAndCompare(s, o, *world);
    EXPECT_EQ(out.status, RunStatus::kMismatch) << Name(size) << "\n" << out.Text();
    EXPECT_NE(out.comparison->Text().find("nan"), std::string::npos) << out.comparison->Text();
  }
}

// ---- PyTorch's runtime orders and the stream layouts ----

Schedule PyTorchRuntime(const std::string& file) {
  return ReadScheduleFile(std::string(PIPEPROOF_TESTDATA_DIR) + "/peers/pytorch/torch-2.15/" + file);
}

// What PyTorch 2.15 executes (SEND/RECV where they stand, WAIT_SENDs, the data-parallel actions),
// run with real messages on every stream layout, bit for bit under legal faults.
TEST(RuntimeOrderTest, PyTorchsRuntimeOrdersRunBitForBitOnEveryLayout) {
  for (const char* file : {"interleaved1f1b_2rank_4stage_4mb_runtime.csv",
                           "interleavedzb_4rank_8stage_8mb_runtime.csv",
                           "zbv_4rank_8stage_8mb_runtime.csv",
                           "dualpipev_4rank_8stage_8mb_runtime.csv"}) {
    const Schedule s = PyTorchRuntime(file);
    for (StreamLayout streams : kStreamLayouts) {
      const uint64_t seed = static_cast<uint64_t>(streams) + 1;
      const RunOutcome o = Check(s, LegalFaults(seed, s.ranks), SmallModel(), 20, streams);
      EXPECT_EQ(o.status, RunStatus::kMatch) << file << " --streams " << StreamLayoutName(streams)
                                             << "\n" << o.Text();
      EXPECT_TRUE(o.comparison && o.comparison->ok()) << file;
      EXPECT_NE(o.Text().find(streams == StreamLayout::kRank
                                  ? "on threads;"
                                  : fmt::format("(--streams {})", StreamLayoutName(streams))),
                std::string::npos)
          << o.Text();
    }
  }
}

// A WAIT_SEND is what frees its send's payload (PyTorch frees it when the wait returns). An
// executor that goes on without waiting frees a buffer still in flight: caught as a mismatch.
TEST(RuntimeOrderTest, AnIgnoredWaitSendIsCaught) {
  for (const Size& size : std::vector<Size>{{"1f1b", 3, 5}, {"gpipe", 2, 3}}) {
    Schedule s = Make(size);
    s = AddWaitSends(s);
    FaultOptions f;
    f.poison = true;
    f.seed = 7;
    f.delay = DelaySpec::Parse("exp:200us");
    RunOptions clean = Options(s, f, SmallModel(), 20);
    auto world = MakeThreadWorld();
    EXPECT_EQ(RunAndCompare(s, clean, *world).status, RunStatus::kMatch) << Name(size);
    RunOptions planted = clean;
    planted.exec.planted_bug = PlantedBug::kIgnoreWaitSend;
    world = MakeThreadWorld();
    const RunOutcome out = RunAndCompare(s, planted, *world);
    EXPECT_EQ(out.status, RunStatus::kMismatch) << Name(size) << "\n" << out.Text();
  }
}

// A deadlock of one layout really hangs on real ranks (the watchdog ends it), and the same schedule
// under a layout where it is sound runs bit for bit: pytorch/pytorch issue 172668's two ranks that
// each send before they receive hang on one stream per rank and on one per pair (two ranks are
// one pair), and run on one stream per directed edge.
TEST(RuntimeOrderTest, ALayoutsDeadlockHangsAndTheSameScheduleRunsWhereItIsSound) {
  const Schedule s = ReadScheduleFile(std::string(PIPEPROOF_TESTDATA_DIR) + "/verify/pytorch_172668.pps");
  for (StreamLayout streams : {StreamLayout::kRank, StreamLayout::kPair}) {
    const auto start = Clock::now();
    const RunOutcome o = Check(s, {}, SmallModel(), 0.3, streams);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    EXPECT_EQ(o.status, RunStatus::kHang) << StreamLayoutName(streams) << "\n" << o.Text();
    EXPECT_LT(seconds, 10);
    EXPECT_NE(o.Text().find("posted, no match yet"), std::string::npos) << o.Text();
  }
  const RunOutcome edge = Check(s, LegalFaults(3), SmallModel(), 20, StreamLayout::kEdge);
  EXPECT_EQ(edge.status, RunStatus::kMatch) << edge.Text();
}

// The pair layout's lazy set-up is real: ranks that meet their peers in crossing orders hang at
// their set-ups before any data moves, while a set-up that only looks like it waits for data (the
// host reaches its first contacts ahead of its computes) runs.
TEST(RuntimeOrderTest, CrossingFirstContactsHangAtTheSetUp) {
  const std::string dir = std::string(PIPEPROOF_TESTDATA_DIR) + "/verify/";
  const Schedule crossing = ReadScheduleFile(dir + "pair_setup_deadlock.pps");
  const RunOutcome hung = Check(crossing, {}, SmallModel(), 0.3, StreamLayout::kPair);
  EXPECT_EQ(hung.status, RunStatus::kHang) << hung.Text();
  EXPECT_NE(hung.Text().find("the set-up of its communicators with rank(s)"), std::string::npos)
      << hung.Text();
  EXPECT_EQ(Check(crossing, LegalFaults(5, 3), SmallModel(), 20, StreamLayout::kEdge).status,
            RunStatus::kMatch);
  const Schedule ring = ReadScheduleFile(dir + "pair_setup_needs_no_data.pps");
  for (StreamLayout streams : kStreamLayouts) {
    const RunOutcome o = Check(ring, LegalFaults(6, 3), SmallModel(), 20, streams);
    EXPECT_EQ(o.status, RunStatus::kMatch) << StreamLayoutName(streams) << "\n" << o.Text();
  }
}

// The NCCL transport has one communicator per rank: the other layouts are refused before anything
// runs, whatever the world.
TEST(RuntimeOrderTest, PairAndEdgeNeedATransportWithChannelsPerStream) {
  const Schedule s = Make({"1f1b", 2, 2});
  auto world = MakeThreadWorld("nccl");
  RunOptions o = Options(s, {}, SmallModel(), 5, StreamLayout::kEdge);
  EXPECT_THROW(RunAndCompare(s, o, *world), InputError);
}

// ---- hangs the schedule itself causes ----

TEST(WatchdogTest, ADeadlockingScheduleIsStoppedWithEveryRanksBlockedAction) {
  const Schedule s = ReadScheduleFile(std::string(PIPEPROOF_TESTDATA_DIR) + "/exec/send-before-recv.pps");
  const auto start = Clock::now();
  const RunOutcome o = Check(s, {}, SmallModel(), 0.3);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  ExpectHangWithDump(o, 0.3, seconds, "send-before-recv");
  const std::string text = o.Text();
  EXPECT_NE(text.find("0SEND_F1 -> rank 1 (message #1): posted, no match yet"), std::string::npos) << text;
  EXPECT_NE(text.find("1SEND_B0 -> rank 0 (message #0): posted, no match yet"), std::string::npos) << text;
  EXPECT_NE(text.find("communication stream: unit #"), std::string::npos) << text;
}

TEST(WatchdogTest, LongInjectedDelaysAreNotHangs) {
  // One rank's first compute sleeps twice the timeout while its peers wait: a sleeping rank is
  // busy, not stuck.
  // The same for a transport sleeping before it posts an op or delivers a message, with the
  // rank's program thread blocked on that unit (a WAIT group; a lone op on the stream).
  for (const char* kind : {"dualpipe", "1f1b"}) {
    const Schedule s = Make({kind, 2, 4});
    for (int where = 0; where < 3; ++where) {
      RunOptions o = Options(s, {}, SmallModel(), 0.2);
      o.faults.ranks.resize(s.ranks);
      RankFaults& f = o.faults.ranks[where == 2 ? 1 : 0];
      if (where == 0) f.compute_delay_us = {400'000};
      if (where == 1) f.post_delay_us = {400'000};
      if (where == 2) {  // rank 1's first receive
        const RankPlan& plan = PlanRun(s).passes[0].ranks[1];
        size_t first = 0;
        while (plan.comms[first].send) ++first;
        f.deliver_delay_us.assign(first + 1, 0);
        f.deliver_delay_us[first] = 400'000;
      }
      auto world = MakeThreadWorld();
      const RunOutcome out = RunAndCompare(s, o, *world);
      EXPECT_EQ(out.status, RunStatus::kMatch) << kind << " " << where << "\n" << out.Text();
      EXPECT_GT(out.execution.seconds, 0.4);
    }
  }
}

TEST(RunOutcomeTest, JsonReportHoldsTheVerdictAndTheComparison) {
  const RunOutcome o = Check(Make({"zb1p", 2, 3}), Control(CorruptKind::kBitflip, {}, 1));
  const std::string json = o.Json();
  EXPECT_NE(json.find("\"status\": \"mismatch\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"exit\": 1"), std::string::npos);
  EXPECT_NE(json.find("\"caught\": true"), std::string::npos);
  EXPECT_NE(json.find("\"comparison\""), std::string::npos);
  EXPECT_NE(json.find("\"peak_bytes_per_rank\""), std::string::npos);
}

}  // namespace
}  // namespace pipeproof

namespace pipeproof {
namespace {

// A schedule the verifier would refuse (a compute before the WAIT that brings its input), run
// anyway through the library: the rank fails at once, the run stops, and it is a runtime fault.
TEST(WatchdogTest, ARankThatFailsStopsTheRunAsARuntimeFault) {
  const Schedule s = ParsePps(
      "ranks 2\nstages 2\nmicrobatches 1\n"
      "rank 0: 0F0 0SEND_F0 WAIT 0RECV_B0 WAIT 0B0\n"
      "rank 1: 1RECV_F0 1F0 WAIT 1B0 1SEND_B0 WAIT\n",
      "early.pps");
  const auto start = Clock::now();
  const RunOutcome o = Check(s, {}, SmallModel(), 10);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 5);
  EXPECT_EQ(o.status, RunStatus::kFault) << o.Text();
  EXPECT_EQ(o.ExitCode(), 3);
  EXPECT_NE(o.headline.find("runtime fault on rank 1"), std::string::npos) << o.headline;
  EXPECT_NE(o.headline.find("has not arrived"), std::string::npos) << o.headline;
  EXPECT_NE(o.Text().find("rank 1: failed"), std::string::npos) << o.Text();
}

}  // namespace
}  // namespace pipeproof
