// deadlock: the event simulation, the Z3 proof, and the ground truth (a step-by-step run of the
// program, in fuzz/schedule_truth.cpp) must agree; the reports must show the cycle.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "fuzz/schedule_mutation.h"
#include "fuzz/schedule_truth.h"
#include "schedule/formats.h"
#include "schedule/generate.h"
#include "schedule/lower.h"
#include "verify/internal.h"
#include "verify/verify.h"
#include "verify/verify_test_util.h"

namespace pipeproof {
namespace {

using testing::FailedChecks;
using testing::Generated;
using testing::Pps;

Schedule Testdata(const std::string& name) {
  return ReadScheduleFile(std::string(PIPEPROOF_TESTDATA_DIR) + "/verify/" + name);
}

Schedule WithoutWaits(Schedule s) {
  for (auto& program : s.program) {
    std::erase_if(program, [](const Action& a) { return a.op == Op::kWait; });
  }
  return s;
}

TEST(Deadlock, PyTorchIssue172668SendBeforeReceive) {
  const Schedule s = Testdata("pytorch_172668.pps");
  const VerifyReport nccl = Verify(s, {});
  EXPECT_EQ(FailedChecks(nccl), std::vector<std::string>{"deadlock"}) << nccl.Text();
  // The cycle: each rank's receive waits behind its own send, each send for the other's receive.
  ASSERT_EQ(nccl.cycle.size(), 4u) << nccl.Text();
  std::vector<std::pair<int, std::string>> steps;
  for (const CycleStep& step : nccl.cycle) steps.push_back({step.rank, step.action});
  EXPECT_EQ(steps, (std::vector<std::pair<int, std::string>>{
                       {0, "0SEND_F1"}, {1, "1RECV_F1"}, {1, "1SEND_F0"}, {0, "2RECV_F0"}}));
  EXPECT_NE(nccl.cycle[0].waits_for.find("rendezvous"), std::string::npos);
  EXPECT_NE(nccl.cycle[1].waits_for.find("one communication stream"), std::string::npos);
  const std::string text = nccl.Text();
  EXPECT_NE(text.find("it would run under the eager model"), std::string::npos) << text;
  EXPECT_NE(text.find("pytorch/pytorch issue 172668"), std::string::npos) << text;
  EXPECT_NE(text.find("*0SEND_F1"), std::string::npos) << "grid around the stuck point\n" << text;
  // Buffered sends get through; so do the same exchanges posted as groups.
  EXPECT_TRUE(Verify(s, {.model = CommModel::kEager}).ok);
  const VerifyReport grouped = Verify(Testdata("pytorch_172668_grouped.pps"), {});
  EXPECT_TRUE(grouped.ok) << grouped.Text();
}

TEST(Deadlock, DualPipeNeedsItsWaitGroupsUnderNccl) {
  for (bool overlap : {true, false}) {
    const Schedule reference = Generated("dualpipe", 4, 8, overlap);
    EXPECT_TRUE(Verify(reference, {}).ok);
    const VerifyReport bare = Verify(WithoutWaits(reference), {});
    EXPECT_EQ(FailedChecks(bare), std::vector<std::string>{"deadlock"}) << bare.Text();
    EXPECT_NE(bare.Text().find("pytorch/pytorch issue 172668"), std::string::npos);
    EXPECT_TRUE(Verify(WithoutWaits(reference), {.model = CommModel::kEager}).ok);
  }
}

TEST(Deadlock, OneFOneBWithoutGroupsDeadlocksUnderNccl) {
  // Rank 0 sends microbatch 1 forward while rank 1 first sends microbatch 0's gradient back:
  // both sends wait for receives queued behind them.
  const VerifyReport r =
      Verify(Pps("ranks 2\nstages 2\nmicrobatches 2\n"
                 "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n"
                 "rank 1: 1RECV_F0 1F0 1B0 1SEND_B0 1RECV_F1 1F1 1B1 1SEND_B1\n"),
             {});
  EXPECT_EQ(FailedChecks(r), std::vector<std::string>{"deadlock"}) << r.Text();
  EXPECT_EQ(r.cycle.size(), 4u) << r.Text();
  EXPECT_TRUE(r.Find("timing")->skipped());
}

TEST(Deadlock, NoZ3SaysTheProofWasSkipped) {
  const VerifyReport r = Verify(Generated("dualpipe", 2, 4), {.use_z3 = false});
  EXPECT_TRUE(r.ok);
  EXPECT_NE(r.Find("deadlock")->message.find("proof skipped (--no-z3)"), std::string::npos);
  EXPECT_NE(Verify(Generated("dualpipe", 2, 4), {}).Find("deadlock")->message.find("certified: the simulated timing satisfies all"),
            std::string::npos);
  if (HaveZ3()) {
    EXPECT_NE(Verify(Generated("dualpipe", 2, 4), {.z3_search = true}).Find("deadlock")->message.find("Z3 proves"),
              std::string::npos);
  }
}

TEST(Deadlock, ComputeOrderThatCannotRun) {
  // Each rank waits for the other's first forward, which sits behind its own wait.
  const VerifyReport cross = Verify(Pps("ranks 2\nstages 4\nmicrobatches 1\nplacement loop\n"
                                        "rank 0: 2F0 0F0 2B0 0B0\n"
                                        "rank 1: 1F0 3F0 3B0 1B0\n"),
                                    {});
  EXPECT_EQ(FailedChecks(cross), std::vector<std::string>{"deadlock"}) << cross.Text();
  EXPECT_FALSE(cross.lowered);
  EXPECT_NE(cross.Text().find("no placement of SEND/RECV"), std::string::npos) << cross.Text();
  // A backward before its own forward is a dependency problem (and the order cannot run).
  const VerifyReport local = Verify(Pps("ranks 2\nstages 2\nmicrobatches 1\n"
                                        "rank 0: 0B0 0F0\n"
                                        "rank 1: 1F0 1B0\n"),
                                    {});
  EXPECT_EQ(FailedChecks(local), (std::vector<std::string>{"dependencies", "deadlock"}))
      << local.Text();
}

TEST(Deadlock, ComputeOnlyInputIsLowered) {
  const Schedule compute = ComputeOnly(Generated("zb1p", 4, 8));
  const VerifyReport r = Verify(compute, {});
  EXPECT_TRUE(r.ok) << r.Text();
  EXPECT_TRUE(r.lowered);
  EXPECT_NE(r.Text().find("compute-only input: verified after lowering"), std::string::npos);
}

// ---- stream layouts (--streams rank|pair|edge) and WAIT_SEND

// The deadlock check's message and details, one line each.
std::string DeadlockText(const VerifyReport& r) {
  const CheckResult* c = r.Find("deadlock");
  std::string text = c->message;
  for (const std::string& line : c->details) text += "\n" + line;
  return text;
}

bool Says(const VerifyReport& r, const std::string& words) {
  return DeadlockText(r).find(words) != std::string::npos;
}

nlohmann::json DeadlockJson(const VerifyReport& r) {
  const nlohmann::json report = nlohmann::json::parse(r.Json());
  for (const nlohmann::json& c : report["checks"]) {
    if (c["name"] == "deadlock") return c;
  }
  return {};
}

using Verdicts = std::vector<std::pair<StreamLayout, bool>>;
constexpr StreamLayout kRank = StreamLayout::kRank;
constexpr StreamLayout kPair = StreamLayout::kPair;
constexpr StreamLayout kEdge = StreamLayout::kEdge;

// What a report sound under --streams `chosen` says when one stream per rank would hang.
std::string ReliesOnConcurrentStreams(StreamLayout chosen) {
  return "but it deadlocks under --streams rank (one stream per rank): under --streams " +
         std::string(StreamLayoutName(chosen)) +
         " it relies on the NCCL kernels of several streams running at the same time, which CUDA "
         "does not guarantee (NVIDIA/nccl issues 783 and 522)";
}
constexpr const char* kSetupSound =
    "the set-up of each pair communicator at the first op between its two ranks cannot deadlock "
    "here";
constexpr const char* kSetupDeadlock =
    "a deadlock of set-up: each pair communicator is created at the first op between its two "
    "ranks";
constexpr const char* kOnlyAboveSomeSize =
    "on hardware this hang shows only above some message size";
constexpr const char* kAnySize = "it hangs at any message size";

// Three ranks in a ring, no WAITs: each rank's traffic with one peer queues behind its traffic
// with the other on its one stream, a cycle through all three ranks. One stream per pair or per
// edge keeps each pair's traffic apart and the schedule runs; the report says that it then relies
// on concurrent NCCL kernels.
TEST(DeadlockStreams, RingHangsOnlyWithOneStreamPerRank) {
  const Schedule s = Testdata("ring_rank_stream_deadlock.pps");
  const VerifyReport rank = Verify(s, {});
  EXPECT_EQ(FailedChecks(rank), std::vector<std::string>{"deadlock"}) << rank.Text();
  EXPECT_EQ(rank.layout_verdicts, (Verdicts{{kRank, false}, {kPair, true}, {kEdge, true}}));
  EXPECT_FALSE(rank.setup_deadlock);
  EXPECT_TRUE(Says(rank,
                   "under the nccl model with one stream per rank (--streams rank) the "
                   "execution cannot finish"))
      << DeadlockText(rank);
  EXPECT_TRUE(Says(rank,
                   "under the other stream layouts: --streams pair runs to its end; "
                   "--streams edge runs to its end"));
  EXPECT_FALSE(Says(rank, kSetupDeadlock));
  // Buffered sends get through, so the hang needs messages above NCCL's buffers.
  EXPECT_TRUE(Says(rank, "under the eager model"));
  EXPECT_TRUE(Says(rank, kOnlyAboveSomeSize));
  EXPECT_FALSE(Says(rank, kAnySize));
  std::set<int> cycle_ranks;
  for (const CycleStep& step : rank.cycle) cycle_ranks.insert(step.rank);
  EXPECT_EQ(cycle_ranks, (std::set<int>{0, 1, 2})) << DeadlockText(rank);
  const nlohmann::json json = nlohmann::json::parse(rank.Json());
  EXPECT_EQ(json["streams"], "rank");
  EXPECT_EQ(DeadlockJson(rank)["deadlock_free_under"],
            (nlohmann::json{{"rank", false}, {"pair", true}, {"edge", true}}));
  EXPECT_EQ(DeadlockJson(rank)["setup_deadlock"], false);

  for (StreamLayout chosen : {kPair, kEdge}) {
    const VerifyReport r = Verify(s, {.streams = chosen});
    EXPECT_TRUE(r.ok) << r.Text();
    EXPECT_EQ(r.layout_verdicts, (Verdicts{{chosen, true}, {kRank, false}}));
    EXPECT_TRUE(Says(r, DescribeSemantics(CommModel::kNccl, chosen))) << DeadlockText(r);
    EXPECT_TRUE(Says(r, ReliesOnConcurrentStreams(chosen))) << DeadlockText(r);
    // Only the pair layout sets up communicators, and says that it cannot deadlock here.
    EXPECT_EQ(Says(r, kSetupSound), chosen == kPair) << DeadlockText(r);
    const nlohmann::json j = DeadlockJson(r);
    EXPECT_EQ(nlohmann::json::parse(r.Json())["streams"], StreamLayoutName(chosen));
    EXPECT_EQ(j["deadlock_free_under"],
              (nlohmann::json{{std::string(StreamLayoutName(chosen)), true}, {"rank", false}}));
    EXPECT_EQ(j["setup_deadlock"], false);
  }
}

// pytorch/pytorch issue 172668 on two ranks: one pair, so one stream per pair is one stream per
// rank and hangs the same way; one stream per direction lets each rank's send and receive pass.
TEST(DeadlockStreams, PyTorchIssue172668HangsUnderRankAndPairRunsUnderEdge) {
  const Schedule s = Testdata("pytorch_172668.pps");
  const VerifyReport rank = Verify(s, {});
  EXPECT_EQ(rank.layout_verdicts, (Verdicts{{kRank, false}, {kPair, false}, {kEdge, true}}));
  EXPECT_TRUE(Says(rank,
                   "under the other stream layouts: --streams pair hangs too; --streams "
                   "edge runs to its end"))
      << DeadlockText(rank);

  const VerifyReport pair = Verify(s, {.streams = kPair});
  EXPECT_EQ(FailedChecks(pair), std::vector<std::string>{"deadlock"}) << pair.Text();
  EXPECT_EQ(pair.layout_verdicts, (Verdicts{{kPair, false}, {kRank, false}, {kEdge, true}}));
  EXPECT_TRUE(Says(pair,
                   "with one stream per rank pair (--streams pair) the execution cannot "
                   "finish"));
  EXPECT_TRUE(Says(pair,
                   "under the other stream layouts: --streams rank hangs too; --streams "
                   "edge runs to its end"))
      << DeadlockText(pair);
  // Two ranks have one communicator to set up: the hang is the rendezvous's, not the set-up's.
  EXPECT_FALSE(pair.setup_deadlock);
  EXPECT_FALSE(Says(pair, kSetupDeadlock));
  EXPECT_TRUE(Says(pair, "pytorch/pytorch issue 172668"));
  EXPECT_TRUE(Says(pair, kOnlyAboveSomeSize));
  EXPECT_EQ(DeadlockJson(pair)["deadlock_free_under"],
            (nlohmann::json{{"pair", false}, {"rank", false}, {"edge", true}}));

  const VerifyReport edge = Verify(s, {.streams = kEdge});
  EXPECT_TRUE(edge.ok) << edge.Text();
  EXPECT_EQ(edge.layout_verdicts, (Verdicts{{kEdge, true}, {kRank, false}}));
  EXPECT_TRUE(Says(edge, ReliesOnConcurrentStreams(kEdge))) << DeadlockText(edge);
  EXPECT_FALSE(Says(edge, kSetupSound));
}

// Three ranks that meet their peers in crossing orders (pair_setup_deadlock.pps says how): under
// the pair layout the hosts hang at their first contacts before any data moves. The same
// crossing holds one stream per rank; one per directed edge runs.
TEST(DeadlockStreams, CrossingFirstContactsDeadlockTheSetUp) {
  const Schedule s = Testdata("pair_setup_deadlock.pps");
  const VerifyReport pair = Verify(s, {.streams = kPair});
  EXPECT_EQ(FailedChecks(pair), std::vector<std::string>{"deadlock"}) << pair.Text();
  EXPECT_TRUE(pair.setup_deadlock);
  EXPECT_EQ(pair.layout_verdicts, (Verdicts{{kPair, false}, {kRank, false}, {kEdge, true}}));
  EXPECT_TRUE(Says(pair, kSetupDeadlock)) << DeadlockText(pair);
  EXPECT_TRUE(Says(pair,
                   "under the other stream layouts: --streams rank hangs too; "
                   "--streams edge runs to its end"))
      << DeadlockText(pair);
  // The cycle is the three set-ups, each rank's host at its first contact.
  ASSERT_EQ(pair.cycle.size(), 3u) << DeadlockText(pair);
  std::string waits;
  for (const CycleStep& step : pair.cycle) waits += step.waits_for + "\n";
  for (const char* setup : {"the set-up of rank 0's communicator with rank 2",
                            "the set-up of rank 1's communicator with rank 0",
                            "the set-up of rank 2's communicator with rank 1"}) {
    EXPECT_NE(waits.find(setup), std::string::npos) << waits;
  }
  const nlohmann::json j = DeadlockJson(pair);
  EXPECT_EQ(j["setup_deadlock"], true);
  EXPECT_EQ(j["deadlock_free_under"],
            (nlohmann::json{{"pair", false}, {"rank", false}, {"edge", true}}));

  const VerifyReport rank = Verify(s, {});
  EXPECT_FALSE(rank.ok) << rank.Text();
  EXPECT_FALSE(rank.setup_deadlock);
  const VerifyReport edge = Verify(s, {.streams = kEdge});
  EXPECT_TRUE(edge.ok) << edge.Text();
  EXPECT_TRUE(Says(edge, "but it deadlocks under --streams rank"));
  EXPECT_TRUE(Verify(s, {.model = CommModel::kEager, .streams = kPair}).ok);
}

// First contacts that go round the ring, but a set-up waits for no data: hosts run ahead of their
// devices, so a host reaches its next first contact without waiting for the compute before it
// (pair_setup_needs_no_data.pps says how). Sound under every layout.
TEST(DeadlockStreams, ASetUpWaitsForNoData) {
  const Schedule s = Testdata("pair_setup_needs_no_data.pps");
  for (StreamLayout streams : kStreamLayouts) {
    const VerifyReport r = Verify(s, {.streams = streams});
    EXPECT_TRUE(r.ok) << StreamLayoutName(streams) << "\n" << r.Text();
  }
  const VerifyReport pair = Verify(s, {.streams = kPair});
  EXPECT_TRUE(Says(pair, "the set-up of each pair communicator at the first op between its two "
                         "ranks cannot deadlock here"))
      << DeadlockText(pair);
}

// A set-up deadlock hangs before any data moves, so buffering small sends cannot help it: the
// report must not say that the hang shows only above some message size, nor that the schedule
// relies on buffered sends.
TEST(DeadlockStreams, SetUpDeadlockHangsAtAnyMessageSize) {
  const VerifyReport pair = Verify(Testdata("pair_setup_deadlock.pps"), {.streams = kPair});
  ASSERT_TRUE(pair.setup_deadlock);
  EXPECT_TRUE(Says(pair, kAnySize)) << DeadlockText(pair);
  EXPECT_FALSE(Says(pair, kOnlyAboveSomeSize));
  EXPECT_FALSE(Says(pair, "it relies on buffered sends"));
}

// 1F1B on two ranks without WAIT groups: rank 0 sends microbatch 1 forward before it receives
// microbatch 0's gradient, which rank 1 sends first. One stream per direction (--streams edge)
// lets the two pass; a WAIT_SEND of each rank right after that send, written before the receive
// the peer needs first, blocks each host until the other's receive runs, which the other host
// posts only after its own WAIT_SEND. (Under --streams rank a WAIT_SEND on a rank without WAITs
// never adds a deadlock: everything after it waits behind its SEND on the one stream anyway.)
constexpr const char* kOneFOneBHeader = "ranks 2\nstages 2\nmicrobatches 2\n";
constexpr const char* kOneFOneBRank1 =
    "rank 1: 1RECV_F0 1F0 1B0 1SEND_B0 1RECV_F1 1F1 1B1 1SEND_B1\n";

TEST(DeadlockWaitSend, WaitSendBeforeTheReceiveThePeerNeedsFirst) {
  const Schedule early = Pps(std::string(kOneFOneBHeader) +
                             "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0WAIT_SEND_F1 0RECV_B0 0B0 "
                             "0WAIT_SEND_F0 0RECV_B1 0B1\n"
                             "rank 1: 1RECV_F0 1F0 1B0 1SEND_B0 1WAIT_SEND_B0 1RECV_F1 1F1 1B1 "
                             "1SEND_B1 1WAIT_SEND_B1\n");
  const VerifyReport r = Verify(early, {.streams = kEdge});
  EXPECT_EQ(FailedChecks(r), std::vector<std::string>{"deadlock"}) << r.Text();
  EXPECT_EQ(r.layout_verdicts, (Verdicts{{kEdge, false}, {kRank, false}, {kPair, false}}));
  std::string waits;
  for (const CycleStep& step : r.cycle) waits += step.waits_for + "\n";
  EXPECT_NE(waits.find("the 0WAIT_SEND_F1 at [4] blocks the rank until that SEND has completed"),
            std::string::npos)
      << waits;
  EXPECT_NE(waits.find("the 1WAIT_SEND_B0 at [4] blocks the rank until that SEND has completed"),
            std::string::npos)
      << waits;
  // A send completes when posted under the eager model: its WAIT_SEND holds nothing.
  EXPECT_TRUE(Says(r, kOnlyAboveSomeSize));
  EXPECT_TRUE(Verify(early, {.model = CommModel::kEager}).ok);

  // The control: the same WAIT_SENDs where PyTorch's _add_wait_send writes them (a SEND_F after
  // the backward of its stage and microbatch, the others at the end) run under --streams edge.
  const Schedule pytorch = Pps(std::string(kOneFOneBHeader) +
                               "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0WAIT_SEND_F0 "
                               "0RECV_B1 0B1 0WAIT_SEND_F1\n"
                               "rank 1: 1RECV_F0 1F0 1B0 1SEND_B0 1RECV_F1 1F1 1B1 1SEND_B1 "
                               "1WAIT_SEND_B0 1WAIT_SEND_B1\n");
  const VerifyReport later = Verify(pytorch, {.streams = kEdge});
  EXPECT_TRUE(later.ok) << later.Text();
  // Neither early WAIT_SEND alone hangs: the other host still posts the receive it waits for.
  const Schedule one = Pps(std::string(kOneFOneBHeader) +
                           "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0WAIT_SEND_F1 0RECV_B0 0B0 "
                           "0WAIT_SEND_F0 0RECV_B1 0B1\n" +
                           kOneFOneBRank1);
  EXPECT_TRUE(Verify(one, {.streams = kEdge}).ok);
}

// On a rank with WAIT groups a SEND is posted only at the next WAIT: a WAIT_SEND written before
// that WAIT waits for a send that its own rank will never post.
TEST(DeadlockWaitSend, WaitSendBeforeTheWaitThatPostsItsSend) {
  const std::string rank1 = "rank 1: 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n";
  const Schedule s = Pps(std::string(kOneFOneBHeader) +
                         "rank 0: 0F0 0SEND_F0 0WAIT_SEND_F0 WAIT 0F1 0SEND_F1 WAIT 0RECV_B0 "
                         "WAIT 0B0 0RECV_B1 WAIT 0B1\n" +
                         rank1);
  for (StreamLayout streams : kStreamLayouts) {
    const VerifyReport r = Verify(s, {.streams = streams});
    EXPECT_EQ(FailedChecks(r), std::vector<std::string>{"deadlock"}) << r.Text();
    ASSERT_FALSE(r.cycle.empty());
    EXPECT_EQ(r.cycle.front().rank, 0);
    // No buffering helps: the send is never posted.
    EXPECT_TRUE(Says(r, kAnySize)) << DeadlockText(r);
  }
  EXPECT_FALSE(Verify(s, {.model = CommModel::kEager}).ok);
  // Written after the WAIT, the same WAIT_SEND holds nothing up.
  const Schedule after = Pps(std::string(kOneFOneBHeader) +
                             "rank 0: 0F0 0SEND_F0 WAIT 0WAIT_SEND_F0 0F1 0SEND_F1 WAIT 0RECV_B0 "
                             "WAIT 0B0 0RECV_B1 WAIT 0B1\n" +
                             rank1);
  for (StreamLayout streams : kStreamLayouts) {
    EXPECT_TRUE(Verify(after, {.streams = streams}).ok) << StreamLayoutName(streams);
  }
}

// A WAIT_SEND inside the group of the WAIT that posts its SEND: the WAIT's group waits for itself
// through the WAIT_SEND, and the cycle must name the WAIT_SEND, not only "WAIT waits for WAIT".
TEST(DeadlockWaitSend, WaitSendBeforeItsWaitIsNamedInTheCycle) {
  const VerifyReport r =
      Verify(Pps(std::string(kOneFOneBHeader) +
                 "rank 0: 0F0 0SEND_F0 0WAIT_SEND_F0 WAIT 0F1 0SEND_F1 WAIT 0RECV_B0 WAIT 0B0 "
                 "0RECV_B1 WAIT 0B1\n"
                 "rank 1: 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n"),
             {.use_z3 = false});
  std::string cycle;
  for (const std::string& line : verify_internal::CycleLines(r.cycle)) cycle += line + "\n";
  EXPECT_NE(cycle.find("0WAIT_SEND_F0"), std::string::npos) << cycle;
}

// The timeline of a WAIT_SEND: from when its rank reaches it (after the compute before it) until
// its SEND completes; what follows starts no earlier.
TEST(DeadlockWaitSend, TimelineOfAWaitSend) {
  const Schedule s = Pps(std::string(kOneFOneBHeader) +
                         "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0WAIT_SEND_F1 0RECV_B0 0B0 0RECV_B1 "
                         "0B1\n" +
                         kOneFOneBRank1);
  // F = 1, B = 2, no latency. Rank 0 runs 0F1 over [1, 2] and posts 0SEND_F1 at 2; rank 1 posts
  // 1RECV_F1 after 1B0, at 4; so the send completes at 4 and 0RECV_B0 is posted only then.
  const Timeline t = Simulate(s, CommModel::kNccl, Costs{}, kEdge);
  ASSERT_TRUE(t.complete);
  const std::vector<TimedAction>& rank0 = t.ranks[0];
  EXPECT_DOUBLE_EQ(rank0[3].start, 2);  // 0SEND_F1
  EXPECT_DOUBLE_EQ(rank0[3].end, 4);
  EXPECT_DOUBLE_EQ(rank0[4].start, 2);  // 0WAIT_SEND_F1: reached after 0F1
  EXPECT_DOUBLE_EQ(rank0[4].end, 4);    // ... until 0SEND_F1 completes
  EXPECT_DOUBLE_EQ(rank0[5].start, 4);  // 0RECV_B0 waits for it
  EXPECT_DOUBLE_EQ(t.busy[0], 6);       // a WAIT_SEND is no compute
  // Without the WAIT_SEND, 0RECV_B0 is posted at 2, when 0F1 ends.
  Schedule bare = s;
  bare.program[0].erase(bare.program[0].begin() + 4);
  EXPECT_DOUBLE_EQ(Simulate(bare, CommModel::kNccl, Costs{}, kEdge).ranks[0][4].start, 2);
  EXPECT_DOUBLE_EQ(Simulate(bare, CommModel::kNccl, Costs{}, kEdge).makespan, t.makespan);
  // With a message latency of 1 both ends finish 1 after the later one starts.
  const Timeline slow = Simulate(s, CommModel::kNccl, ParseCosts("L=1"), kEdge);
  EXPECT_DOUBLE_EQ(slow.ranks[0][4].end, slow.ranks[0][3].end);
  EXPECT_GT(slow.ranks[0][4].end, slow.ranks[0][4].start);
}

// What pipeproof finds in PyTorch 2.15's own runtime orders (written by PyTorch's _dump_csv,
// testdata/peers/pytorch/torch-2.15/generated/README.md says how and why): each kind is sound
// under every layout; defer_pp_recv=True deadlocks two ranks that each send before they receive
// (one stream per rank or per pair: issue 172668 again), closes a three-rank ring through one
// stream per rank only, and on a directed edge that carries activations and gradients mixes them
// up under every layout. The README's findings are these verdicts.
TEST(PyTorchSchedules, WhatPipeproofFindsInPyTorchsOwnRuntimeOrders) {
  using Checks = std::vector<std::string>;
  const Checks sound, deadlock{"deadlock"}, mixup{"dependencies", "matching"},
      mixup_and_deadlock{"dependencies", "matching", "deadlock"};
  const struct {
    const char* file;
    Checks rank, pair, edge, eager;
  } cases[] = {
      {"interleaved1f1b_3rank_6stage_6mb_runtime.csv", sound, sound, sound, sound},
      {"loopedbfs_3rank_6stage_3mb_runtime.csv", sound, sound, sound, sound},
      {"interleavedzb_3rank_6stage_6mb_runtime.csv", sound, sound, sound, sound},
      {"zbv_3rank_6stage_6mb_runtime.csv", sound, sound, sound, sound},
      {"dualpipev_3rank_6stage_6mb_runtime.csv", sound, sound, sound, sound},
      {"gpipe_3rank_3mb_compute.csv", sound, sound, sound, sound},
      {"gpipe_3rank_3mb_lowered_runtime.csv", sound, sound, sound, sound},
      {"dualpipev_3rank_6stage_6mb_mos1_runtime.csv", sound, sound, sound, sound},
      {"interleaved1f1b_4rank_8stage_8mb_mos1_runtime.csv", sound, sound, sound, sound},
      {"interleaved1f1b_2rank_4stage_2mb_defer_runtime.csv", deadlock, deadlock, sound, sound},
      {"dualpipev_2rank_4stage_4mb_defer_runtime.csv", deadlock, deadlock, sound, sound},
      {"loopedbfs_3rank_6stage_3mb_defer_runtime.csv", deadlock, sound, sound, sound},
      {"zbv_2rank_4stage_4mb_defer_runtime.csv", mixup_and_deadlock, mixup_and_deadlock, mixup,
       mixup},
      {"dualpipev_4rank_8stage_8mb_defer_runtime.csv", mixup_and_deadlock, mixup_and_deadlock,
       mixup, mixup},
      {"interleavedzb_2rank_4stage_3mb_defer_runtime.csv", mixup_and_deadlock,
       mixup_and_deadlock, mixup, mixup},
  };
  for (const auto& c : cases) {
    const Schedule s = ReadScheduleFile(std::string(PIPEPROOF_TESTDATA_DIR) +
                                        "/peers/pytorch/torch-2.15/generated/" + c.file);
    EXPECT_EQ(FailedChecks(Verify(s, {.use_z3 = false})), c.rank) << c.file;
    EXPECT_EQ(FailedChecks(Verify(s, {.streams = kPair, .use_z3 = false})), c.pair) << c.file;
    EXPECT_EQ(FailedChecks(Verify(s, {.streams = kEdge, .use_z3 = false})), c.edge) << c.file;
    EXPECT_EQ(FailedChecks(Verify(s, {.model = CommModel::kEager, .use_z3 = false})), c.eager)
        << c.file;
  }
  // The three-rank ring runs on a stream per pair thanks to concurrent streams: the report says so.
  const VerifyReport ring = Verify(
      ReadScheduleFile(std::string(PIPEPROOF_TESTDATA_DIR) +
                       "/peers/pytorch/torch-2.15/generated/loopedbfs_3rank_6stage_3mb_defer_runtime.csv"),
      {.streams = kPair});
  EXPECT_TRUE(Says(ring, "but it deadlocks under --streams rank")) << DeadlockText(ring);
}

// Every schedule of this file's stream and WAIT_SEND tests, decided three ways under each model
// and layout: the event simulation, Z3 (full search, where built) and the step-by-step run of
// fuzz/schedule_truth.cpp. Verify's own verdict with and without Z3 must agree too.

// The proofs of one verdict: Z3's search decides as the simulation did (with the cycle of a
// deadlock), and the default proof certifies it: a complete execution by its timing (no solver),
// a deadlock by Z3 on its cycle's constraints.
void ExpectProofsAgree(const Schedule& s, const RouteIndex& routes, const verify_internal::Messages& messages,
                       CommModel model, StreamLayout streams, const verify_internal::SimulationResult& sim,
                       const std::string& where) {
  using verify_internal::Proof;
  const bool simulated = sim.timeline.complete;
  const Proof certified = verify_internal::ProveDeadlockVerdict(s, routes, messages, model, streams, sim, {});
  if (simulated) {
    EXPECT_EQ(certified.verdict.outcome, ProofVerdict::Outcome::kDeadlockFree) << certified.verdict.note << "\n" << where;
    EXPECT_EQ(certified.verdict.method, "certificate");
  }
  if (!HaveZ3()) return;
  if (!simulated) {
    EXPECT_EQ(certified.verdict.outcome, ProofVerdict::Outcome::kDeadlock) << where;
    EXPECT_LT(certified.verdict.proved_constraints, certified.verdict.constraints) << where;
  }
  const Proof searched = verify_internal::ProveDeadlockVerdict(s, routes, messages, model, streams, sim, {.search = true});
  EXPECT_EQ(searched.verdict.outcome == ProofVerdict::Outcome::kDeadlockFree, simulated) << where;
  EXPECT_EQ(searched.cycle.empty(), simulated) << where;
}

TEST(DeadlockStreams, SimulationZ3AndGroundTruthAgreeOnTheseSchedules) {
  const std::string h = kOneFOneBHeader;
  std::vector<Schedule> schedules = {
      Testdata("ring_rank_stream_deadlock.pps"),
      Testdata("pair_setup_deadlock.pps"),
      Testdata("pair_setup_needs_no_data.pps"),
      Testdata("pytorch_172668.pps"),
      Testdata("pytorch_172668_grouped.pps"),
      Pps(h + "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0WAIT_SEND_F1 0RECV_B0 0B0 0WAIT_SEND_F0 "
              "0RECV_B1 0B1\n"
              "rank 1: 1RECV_F0 1F0 1B0 1SEND_B0 1WAIT_SEND_B0 1RECV_F1 1F1 1B1 1SEND_B1 "
              "1WAIT_SEND_B1\n"),
      Pps(h + "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0WAIT_SEND_F0 0RECV_B1 0B1 "
              "0WAIT_SEND_F1\n"
              "rank 1: 1RECV_F0 1F0 1B0 1SEND_B0 1RECV_F1 1F1 1B1 1SEND_B1 1WAIT_SEND_B0 "
              "1WAIT_SEND_B1\n"),
      Pps(h + "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0WAIT_SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n" +
          kOneFOneBRank1),
      Pps(h + "rank 0: 0F0 0SEND_F0 0WAIT_SEND_F0 WAIT 0F1 0SEND_F1 WAIT 0RECV_B0 WAIT 0B0 "
              "0RECV_B1 WAIT 0B1\n"
              "rank 1: 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n"),
      Pps(h + "rank 0: 0F0 0SEND_F0 WAIT 0WAIT_SEND_F0 0F1 0SEND_F1 WAIT 0RECV_B0 WAIT 0B0 "
              "0RECV_B1 WAIT 0B1\n"
              "rank 1: 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n"),
      // Data-parallel actions take no part in the deadlock question.
      Pps(h + "rank 0: 0UNSHARD 0F0 0SEND_F0 0F1 0SEND_F1 0RESHARD 0RECV_B0 0UNSHARD 0B0 "
              "0WAIT_SEND_F0 0RECV_B1 0B1 0WAIT_SEND_F1 0REDUCE_GRAD 0RESHARD "
              "0WAIT_REDUCE_GRAD\n"
              "rank 1: 1UNSHARD 1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1 1REDUCE_GRAD "
              "1WAIT_REDUCE_GRAD 1RESHARD 1WAIT_SEND_B0 1WAIT_SEND_B1\n"),
  };
  int deadlocks = 0, runs = 0;
  for (const Schedule& input : schedules) {
    Schedule s = input;
    CompleteTopology(s);
    const RouteIndex routes(s);
    const verify_internal::Messages messages = verify_internal::MatchMessages(s, routes);
    const std::vector<std::pair<CommModel, StreamLayout>> semantics = {{CommModel::kNccl, kRank},
                                                                       {CommModel::kNccl, kPair},
                                                                       {CommModel::kNccl, kEdge},
                                                                       {CommModel::kEager, kRank}};
    for (const auto& [model, streams] : semantics) {
      const std::string where = DescribeSemantics(model, streams) + "\n" + WritePps(s);
      const verify_internal::SimulationResult sim =
          verify_internal::RunSimulation(s, routes, messages, model, Costs{}, streams, /*record_order=*/true);
      const bool simulated = sim.timeline.complete;
      EXPECT_EQ(truth::Run(s, model, streams).runs_to_end, simulated) << where;
      ExpectProofsAgree(s, routes, messages, model, streams, sim, where);
      for (bool use_z3 : {false, true}) {
        const VerifyReport r = Verify(s, {.model = model, .streams = streams, .use_z3 = use_z3});
        EXPECT_EQ(r.Find("deadlock")->ok(), simulated) << where << r.Text();
        EXPECT_EQ(r.setup_deadlock, sim.setup_deadlock) << where;
      }
      (simulated ? runs : deadlocks)++;
    }
  }
  EXPECT_GT(deadlocks, 10);
  EXPECT_GT(runs, 10);
}

// The three deciders over many schedules: generated ones and mutants of them that pass the
// structure check, under both models. Also: deadlock-free under nccl implies under eager.
TEST(Deadlock, SimulationZ3AndGroundTruthAgree) {
  std::vector<Schedule> schedules;
  std::mt19937 rng(172668);
  const std::vector<std::tuple<std::string, int, int>> sizes = {
      {"dualpipe", 2, 4},  {"dualpipe", 4, 8},        {"dualpipe", 6, 12}, {"dualpipev", 2, 4},
      {"dualpipev", 3, 7}, {"dualpipev", 4, 8},       {"1f1b", 3, 5},      {"zb1p", 3, 6},
      {"gpipe", 2, 3},     {"interleaved-1f1b", 2, 4}};
  for (const auto& [kind, r, m] : sizes) {
    for (bool overlap : {true, false}) {
      const Schedule base = Generated(kind, r, m, overlap);
      schedules.push_back(base);
      schedules.push_back(WithoutWaits(base));
      for (int k = 0; k < 14; ++k) {
        Schedule mutant = base;
        const auto& all = AllMutationClasses();
        const MutationClass c = all[rng() % all.size()];
        if (Mutate(mutant, c, rng()).empty()) continue;
        if (truth::StructureHolds(mutant)) schedules.push_back(std::move(mutant));
      }
    }
  }
  int deadlocks = 0, compared = 0;
  double z3_seconds = 0;
  for (const Schedule& s : schedules) {
    const RouteIndex routes(s);
    const verify_internal::Messages messages = verify_internal::MatchMessages(s, routes);
    bool nccl_runs = false;
    for (CommModel model : {CommModel::kNccl, CommModel::kEager}) {
      const verify_internal::SimulationResult sim = verify_internal::RunSimulation(s, routes, messages, model, Costs{});
      const bool simulated = sim.timeline.complete;
      const bool truth_runs = truth::Run(s, model).runs_to_end;
      ASSERT_EQ(simulated, truth_runs) << CommModelName(model) << "\n" << WritePps(s);
      if (model == CommModel::kNccl) nccl_runs = simulated;
      if (model == CommModel::kEager && nccl_runs) {
        ASSERT_TRUE(simulated) << "deadlock-free under nccl, not under eager\n" << WritePps(s);
      }
      deadlocks += !simulated;
      if (HaveZ3()) {
        const verify_internal::Proof z3 = verify_internal::ProveDeadlockVerdict(
            s, routes, messages, model, StreamLayout::kRank, sim, {.search = true});
        ASSERT_EQ(z3.verdict.outcome == ProofVerdict::Outcome::kDeadlockFree, simulated)
            << CommModelName(model) << "\n" << WritePps(s);
        if (!simulated) {
          ASSERT_FALSE(z3.cycle.empty());
        }
        z3_seconds += z3.verdict.seconds;
        ++compared;
      }
    }
    // The other stream layouts against the step-by-step run only: Z3 compares them in
    // SimulationZ3AndGroundTruthAgreeOnTheseSchedules and in property suite 2.
    for (StreamLayout streams : {StreamLayout::kPair, StreamLayout::kEdge}) {
      const bool simulated =
          verify_internal::RunSimulation(s, routes, messages, CommModel::kNccl, Costs{}, streams)
              .timeline.complete;
      ASSERT_EQ(simulated, truth::Run(s, CommModel::kNccl, streams).runs_to_end)
          << StreamLayoutName(streams) << "\n"
          << WritePps(s);
    }
  }
  std::printf("[ deadlock ] %zu schedules x 2 models: %d deadlocks; Z3 compared on %d (%.2f s)\n",
              schedules.size(), deadlocks, compared, z3_seconds);
  EXPECT_GT(deadlocks, 20);
}

// Every step of a reported cycle names an action that exists, and the steps form a loop.
TEST(Deadlock, CycleStepsNameRealActions) {
  // 120 draws: the shared mutation library draws its places from a seed per mutant, and 60 of them
  // left the cycle count at the edge of its bound.
  std::mt19937 rng(7);
  int cycles = 0;
  for (int k = 0; k < 120; ++k) {
    Schedule s = Generated(k % 2 ? "dualpipe" : "dualpipev", 4, 8, k % 3 != 0);
    const MutationClass c = k % 4 ? MutationClass::kMoveWait : MutationClass::kSwapSendRecv;
    if (Mutate(s, c, rng()).empty()) continue;
    if (!truth::StructureHolds(s)) continue;
    const VerifyReport r = Verify(s, {.use_z3 = false});
    if (r.Find("deadlock")->ok()) continue;
    ++cycles;
    ASSERT_FALSE(r.cycle.empty()) << r.Text();
    for (const CycleStep& step : r.cycle) {
      ASSERT_LT(step.index, static_cast<int>(s.program[step.rank].size()));
      EXPECT_EQ(step.action, ToString(s.program[step.rank][step.index]));
      EXPECT_FALSE(step.waits_for.empty());
    }
  }
  EXPECT_GT(cycles, 5);
}

// The proof's outcome as a field of the deadlock check and of its JSON, not only as words.
TEST(Deadlock, ProofVerdictIsStructured) {
  const Schedule sound = Generated("dualpipe", 2, 4);
  const Schedule hangs = Pps(std::string(kOneFOneBHeader) +
                             "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n"
                             "rank 1: 1RECV_F0 1F0 1B0 1SEND_B0 1RECV_F1 1F1 1B1 1SEND_B1\n");
  using Outcome = ProofVerdict::Outcome;
  for (const Schedule* s : {&sound, &hangs}) {
    const std::optional<ProofVerdict> skipped = Verify(*s, {.use_z3 = false}).Find("deadlock")->proof;
    ASSERT_TRUE(skipped.has_value());
    EXPECT_EQ(skipped->outcome, Outcome::kNotAsked);
  }
  const VerifyReport ok = Verify(sound, {});
  const VerifyReport deadlock = Verify(hangs, {});
  ASSERT_TRUE(ok.ok) << ok.Text();
  ASSERT_EQ(FailedChecks(deadlock), std::vector<std::string>{"deadlock"}) << deadlock.Text();
  const ProofVerdict& free_proof = ok.Find("deadlock")->proof.value();
  const ProofVerdict& deadlock_proof = deadlock.Find("deadlock")->proof.value();
  const nlohmann::json free_json = DeadlockJson(ok)["proof"];
  const nlohmann::json deadlock_json = DeadlockJson(deadlock)["proof"];
  // A complete execution is certified without a solver; a deadlock's cycle needs Z3.
  EXPECT_EQ(free_proof.outcome, Outcome::kDeadlockFree);
  EXPECT_EQ(free_json["method"], "certificate");
  EXPECT_EQ(free_proof.proved_constraints, free_proof.constraints);
  if (!HaveZ3()) {
    EXPECT_EQ(deadlock_proof.outcome, Outcome::kNoZ3);
    EXPECT_EQ(deadlock_json["outcome"], "no-z3");
    return;
  }
  EXPECT_EQ(deadlock_proof.outcome, Outcome::kDeadlock);
  EXPECT_EQ(deadlock_json["method"], "cycle");
  EXPECT_LT(deadlock_proof.proved_constraints, deadlock_proof.constraints);
  for (const ProofVerdict* p : {&free_proof, &deadlock_proof}) {
    EXPECT_TRUE(p->agrees_with_simulation);
    EXPECT_GT(p->constraints, 0);
    EXPECT_GT(p->variables, 0);
  }
  EXPECT_EQ(free_json["outcome"], "deadlock-free");
  EXPECT_EQ(deadlock_json["outcome"], "deadlock");
  EXPECT_EQ(deadlock_json["agrees_with_simulation"], true);
  EXPECT_EQ(deadlock_json["constraints"], deadlock_proof.constraints);
  // The fields the JSON had before stay.
  EXPECT_TRUE(DeadlockJson(deadlock).contains("cycle"));
  EXPECT_TRUE(DeadlockJson(deadlock).contains("setup_deadlock"));
}

// Past Z3's time cap the proof is skipped, saying so, and the verdict stands on the simulation:
// the check passes or fails as the simulation says, the exit status unchanged.
TEST(Deadlock, PastACapTheProofIsSkippedAndTheSimulationDecides) {
  if (!HaveZ3()) GTEST_SKIP() << "this build has no Z3";
  const Schedule s = Generated("dualpipe", 32, 256);
  const VerifyReport r = Verify(s, {.z3_search = true, .z3_timeout_s = 0.001});
  EXPECT_TRUE(r.ok) << r.Text();
  const ProofVerdict& proof = r.Find("deadlock")->proof.value();
  EXPECT_EQ(proof.outcome, ProofVerdict::Outcome::kSkipped);
  EXPECT_NE(proof.note.find("time cap, 0.001 s (--z3-timeout)"), std::string::npos) << proof.note;
  EXPECT_NE(r.Find("deadlock")->message.find("proof skipped: Z3 reached its time cap"), std::string::npos)
      << r.Find("deadlock")->message;
  EXPECT_EQ(DeadlockJson(r)["proof"]["outcome"], "skipped");
  EXPECT_NE(DeadlockJson(r)["proof"]["skipped_because"].get<std::string>().find("--z3-timeout"), std::string::npos);
  // The certified proof needs no solver, so no cap reaches it.
  EXPECT_EQ(Verify(s, {.z3_timeout_s = 0.001}).Find("deadlock")->proof->outcome, ProofVerdict::Outcome::kDeadlockFree);
}

// The negative control of the certificate: the simulated timing of a sound schedule passes; the
// same timing corrupted (two events of one rank swapped, one event lost) is refused, naming the
// rule it breaks. A certificate that passed any order would prove nothing.
TEST(Deadlock, TheCertificateRefusesACorruptedTiming) {
  for (const auto& [kind, streams] : {std::pair{"dualpipe", StreamLayout::kRank}, std::pair{"1f1b", StreamLayout::kPair},
                                      std::pair{"zb1p", StreamLayout::kEdge}}) {
    Schedule s = Generated(kind, 4, 8);
    const RouteIndex routes(s);
    const verify_internal::Messages messages = verify_internal::MatchMessages(s, routes);
    const verify_internal::SimulationResult sim =
        verify_internal::RunSimulation(s, routes, messages, CommModel::kNccl, Costs{}, streams, true);
    ASSERT_TRUE(sim.timeline.complete);
    EXPECT_EQ(verify_internal::CheckCertificate(s, routes, messages, CommModel::kNccl, streams, sim.order), "");
    // Rank 1's first and last computes trade places.
    verify_internal::EventOrder swapped = sim.order;
    std::vector<int> computes;
    for (int i = 0; i < static_cast<int>(s.program[1].size()); ++i) {
      if (IsCompute(s.program[1][i].op)) computes.push_back(i);
    }
    std::swap(swapped.at[1][computes.front()], swapped.at[1][computes.back()]);
    const std::string refused = verify_internal::CheckCertificate(s, routes, messages, CommModel::kNccl, streams, swapped);
    EXPECT_NE(refused.find("must come first"), std::string::npos) << kind << ": " << refused;
    // A unit of rank 2 completing as it starts.
    verify_internal::EventOrder early = sim.order;
    for (size_t i = 0; i < early.end[2].size(); ++i) {
      if (early.end[2][i] >= 0) {
        early.end[2][i] = early.at[2][i];
        break;
      }
    }
    EXPECT_NE(verify_internal::CheckCertificate(s, routes, messages, CommModel::kNccl, streams, early).find("must come first"),
              std::string::npos)
        << kind;
    verify_internal::EventOrder lost = sim.order;
    lost.end[0].assign(lost.end[0].size(), -1);
    EXPECT_NE(verify_internal::CheckCertificate(s, routes, messages, CommModel::kNccl, streams, lost).find("has no"),
              std::string::npos);
  }
}

// A deadlock caused by a missing RECV gets the advice that fixes it (add the RECV), not the
// grouping advice of a send-before-receive cycle.
TEST(Deadlock, AMissingReceiveIsNamedAsTheCause) {
  Schedule s = Generated("1f1b", 2, 3);
  auto& rank1 = s.program[1];
  const auto recv = std::find_if(rank1.begin(), rank1.end(), [](const Action& a) {
    return a.op == Op::kRecvF && a.microbatch == 1;
  });
  ASSERT_NE(recv, rank1.end());
  rank1.erase(recv);
  const VerifyReport r = Verify(s, {.use_z3 = false});
  ASSERT_FALSE(r.Find("deadlock")->ok()) << r.Text();
  EXPECT_NE(r.Find("deadlock")->message.find("a SEND or RECV has no partner"), std::string::npos)
      << r.Text();
  EXPECT_TRUE(Says(r, "the cause is a message without a partner: rank 0 [7] 0SEND_F2 is left over"))
      << r.Text();
  EXPECT_FALSE(Says(r, "in one group")) << r.Text();
}

}  // namespace
}  // namespace pipeproof
