// repair: every result is judged by the ground truth (fuzz/schedule_truth.h), apart from verify/.
#include "verify/repair.h"

#include <gtest/gtest.h>

#include <iostream>

#include "fuzz/schedule_truth.h"
#include "schedule/formats.h"
#include "schedule/generate.h"
#include "verify/repair_test_util.h"

namespace pipeproof {
namespace {

Schedule Pps(const std::string& text) { return ParsePps(text, "test.pps"); }

VerifyOptions Options(CommModel model = CommModel::kNccl, StreamLayout streams = StreamLayout::kRank) {
  VerifyOptions o;
  o.model = model;
  o.streams = streams;
  return o;
}

// The repaired schedule is sound by the ground truth, its computes are the input's, the edits
// listed are exactly what changed, and they are no more than re-lowering would change (counted
// here, and as reported).
void ExpectRepaired(const Schedule& in, const RepairResult& r, StreamLayout streams = StreamLayout::kRank) {
  ASSERT_EQ(r.outcome, RepairResult::Outcome::kRepaired) << r.Text();
  EXPECT_TRUE(truth::Judge(r.schedule, CommModel::kNccl, streams).sound())
      << truth::Judge(r.schedule, CommModel::kNccl, streams).Describe() << "\n" << r.Text();
  EXPECT_EQ(testing::Computes(r.schedule), testing::Computes(in));
  EXPECT_EQ(testing::ApplyEdits(in, r.edits).program, r.schedule.program) << r.Text();
  EXPECT_EQ(r.relowered_edits, testing::RelowerEdits(in));
  EXPECT_LE(static_cast<int>(r.edits.size()), testing::RelowerEdits(in));
  EXPECT_TRUE(RepairSound(r.after));
}

TEST(Repair, TwoRanksThatEachSendFirstNeedOneMove) {  // pytorch/pytorch issue 172668
  const Schedule s = Pps(R"(ranks 2
stages 4
microbatches 2
placement loop
rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 2RECV_F0 2F0 2SEND_F0 2RECV_F1 2F1 2SEND_F1 2RECV_B0 2B0 2SEND_B0 2RECV_B1 2B1 2SEND_B1 0RECV_B0 0B0 0RECV_B1 0B1
rank 1: 1RECV_F0 1F0 1SEND_F0 1RECV_F1 1F1 1SEND_F1 3RECV_F0 3F0 3B0 3SEND_B0 3RECV_F1 3F1 3B1 3SEND_B1 1RECV_B0 1B0 1SEND_B0 1RECV_B1 1B1 1SEND_B1
)");
  ASSERT_FALSE(truth::Judge(s, CommModel::kNccl).sound());
  const RepairResult r = Repair(s, Options());
  ExpectRepaired(s, r);
  // Five crossings (each rank sends before it receives, five times over): one move each.
  EXPECT_EQ(r.edits.size(), 5u) << r.Text();
  EXPECT_EQ(r.method, "local");
  EXPECT_NE(r.edits.front().reason.find("deadlock: breaks the cycle"), std::string::npos) << r.Text();
}

TEST(Repair, SoundScheduleIsLeftAlone) {
  const Schedule s = Generate({.kind = "1f1b", .ranks = 4, .microbatches = 8});
  const RepairResult r = Repair(s, Options());
  EXPECT_EQ(r.outcome, RepairResult::Outcome::kAlreadySound);
  EXPECT_TRUE(r.edits.empty());
  EXPECT_EQ(r.schedule, s);
}

TEST(Repair, DualPipeWithoutWaitsNeedsNoMoreEditsThanWaitsRemoved) {
  for (const char* kind : {"dualpipe", "dualpipev"}) {
    Schedule s = Generate({.kind = kind, .ranks = 4, .microbatches = 8});
    int removed = 0;
    for (auto& program : s.program) {
      removed += std::erase_if(program, [](const Action& a) { return a.op == Op::kWait; });
    }
    ASSERT_FALSE(truth::Judge(s, CommModel::kNccl).sound()) << kind;
    const RepairResult r = Repair(s, Options());
    ExpectRepaired(s, r);
    EXPECT_LE(static_cast<int>(r.edits.size()), removed) << kind << "\n" << r.Text();
    std::cout << kind << " 4x8 without its " << removed << " WAITs: " << r.edits.size() << " edits ("
              << r.method << "; re-lowering " << r.relowered_edits << ")\n";
  }
}

// Every deadlocking or mixed-up fixture, under every layout where it fails: repaired, sound by
// the ground truth, its computes untouched, never more edits than re-lowering. Among them
// PyTorch 2.15's own runtime orders with defer_pp_recv, which hang or mix up messages.
TEST(Repair, EveryBrokenFixtureIsRepaired) {
  const std::string data = PIPEPROOF_TESTDATA_DIR;
  const std::string generated = data + "/peers/pytorch/torch-2.15/generated/";
  int repaired = 0;
  for (const std::string& path :
       {data + "/verify/pytorch_172668.pps", data + "/verify/pytorch_109401.pps",
        data + "/verify/hand_1f1b_last_rank.pps", data + "/verify/ring_rank_stream_deadlock.pps",
        data + "/verify/pair_setup_deadlock.pps", generated + "dualpipev_2rank_4stage_4mb_defer_runtime.csv",
        generated + "dualpipev_4rank_8stage_8mb_defer_runtime.csv",
        generated + "interleaved1f1b_2rank_4stage_2mb_defer_runtime.csv",
        generated + "interleavedzb_2rank_4stage_3mb_defer_runtime.csv",
        generated + "loopedbfs_3rank_6stage_3mb_defer_runtime.csv",
        generated + "zbv_2rank_4stage_4mb_defer_runtime.csv"}) {
    const Schedule s = ReadScheduleFile(path);
    for (StreamLayout streams : kStreamLayouts) {
      SCOPED_TRACE(path + " --streams " + std::string(StreamLayoutName(streams)));
      if (truth::Judge(s, CommModel::kNccl, streams).sound()) continue;
      const RepairResult r = Repair(s, Options(CommModel::kNccl, streams));
      ExpectRepaired(s, r, streams);
      EXPECT_EQ(r.method, "local") << r.Text();
      ++repaired;
    }
  }
  EXPECT_EQ(repaired, 23);
}

// The diff names moves, additions and removals by their positions, with computes as anchors: an
// op taken out in one place and written in another of its rank is one move.
TEST(Repair, CommunicationDiffCountsMovesAddsAndRemovals) {
  const Schedule before = Pps("ranks 2\nmicrobatches 1\n"
                              "rank 0: 0F0 0SEND_F0 0RECV_B0 0B0\n"
                              "rank 1: 1RECV_F0 1F0 1B0 WAIT 1SEND_B0\n");
  const Schedule after = Pps("ranks 2\nmicrobatches 1\n"
                             "rank 0: 0F0 0RECV_B0 0SEND_F0 0B0\n"
                             "rank 1: 1RECV_F0 1F0 1B0 1SEND_B0 1SEND_B0\n");
  const std::vector<RepairEdit> edits = CommunicationDiff(before, after);
  ASSERT_EQ(edits.size(), 3u);
  EXPECT_EQ(Describe(edits[0]), "rank 0: move 0SEND_F0 from [1] to [2]");
  EXPECT_EQ(Describe(edits[1]), "rank 1: remove WAIT from [3]");
  EXPECT_EQ(Describe(edits[2]), "rank 1: add 1SEND_B0 at [4]");
  EXPECT_TRUE(CommunicationDiff(before, before).empty());
  // The listed positions rebuild the new schedule, and an edit list missing one does not.
  EXPECT_EQ(testing::ApplyEdits(before, edits).program, after.program);
  EXPECT_NE(testing::ApplyEdits(before, {edits[0], edits[1]}).program, after.program);
  const Schedule other_computes = Pps("ranks 2\nmicrobatches 1\n"
                                      "rank 0: 0F0 0B0 0SEND_F0 0RECV_B0\n"
                                      "rank 1: 1F0 1RECV_F0 1B0 1SEND_B0\n");
  EXPECT_THROW(CommunicationDiff(before, Pps("ranks 2\nmicrobatches 1\nrank 0: 0B0 0F0\nrank 1: 1F0 1B0\n")),
               InputError);
  EXPECT_EQ(CommunicationDiff(before, other_computes).size(), 4u);
}

// Under the eager model the crossing sends of issue 172668 run: nothing to repair. A mix-up
// does not run under any model and is put in one FIFO order.
TEST(Repair, EagerModelRepairsOnlyWhatHangsOrMixesUp) {
  const Schedule crossing = ReadScheduleFile(std::string(PIPEPROOF_TESTDATA_DIR) + "/verify/pytorch_172668.pps");
  EXPECT_EQ(Repair(crossing, Options(CommModel::kEager)).outcome, RepairResult::Outcome::kAlreadySound);
  const Schedule mixed = Pps("ranks 2\nmicrobatches 2\n"
                             "rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n"
                             "rank 1: 1RECV_F1 1RECV_F0 1F0 1B0 1SEND_B0 1F1 1B1 1SEND_B1\n");
  const RepairResult r = Repair(mixed, Options(CommModel::kEager));
  ASSERT_EQ(r.outcome, RepairResult::Outcome::kRepaired) << r.Text();
  EXPECT_TRUE(truth::Judge(r.schedule, CommModel::kEager).sound()) << r.Text();
  ASSERT_EQ(r.edits.size(), 1u) << r.Text();
  EXPECT_NE(r.edits[0].reason.find("matching: message 0 from rank 0 to rank 1"), std::string::npos) << r.Text();
}

// Negative control: a compute order that no communication can run ends in no repaired schedule.
TEST(Repair, ComputeOrderThatCannotRunIsRefused) {
  // Rank 0 writes 0B0 before 0F0: the backward waits for rank 1's gradient, which needs the
  // activation 0F0 would send.
  const Schedule s = Pps(R"(ranks 2
microbatches 1
rank 0: 0B0 0F0
rank 1: 1F0 1B0
)");
  const RepairResult r = Repair(s, Options());
  EXPECT_EQ(r.outcome, RepairResult::Outcome::kComputeCannotRun) << r.Text();
  EXPECT_NE(r.problem.find("rank 0 [0] 0B0 waits for"), std::string::npos) << r.problem;
  EXPECT_TRUE(r.edits.empty());
}

}  // namespace
}  // namespace pipeproof
