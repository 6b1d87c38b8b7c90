#include "schedule/generate.h"

#include <gtest/gtest.h>

#include <map>
#include <sstream>

#include "schedule/formats.h"
#include "schedule/lower.h"
#include "schedule/test_util.h"

namespace pipeproof {
namespace {

using testing::ReadTestdata;

// The "rank r: ..." lines of a .pps text.
std::string RankLines(const std::string& pps) {
  std::istringstream in(pps);
  std::string out;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("rank ", 0) == 0) out += line + "\n";
  }
  return out;
}

TEST(DualPipeTest, MatchesTheReferenceImplementationsRecordedOrder) {
  EXPECT_EQ(RankLines(WritePps(GenerateDualPipe(4, 8, true))),
            ReadTestdata("peers/dualpipe-reference/dualpipe-r4-m8.txt"));
  EXPECT_EQ(RankLines(WritePps(GenerateDualPipeV(2, 5, true))),
            ReadTestdata("peers/dualpipe-reference/dualpipev-r2-m5.txt"));
}

TEST(DualPipeTest, ComputeOnlyDualPipeVEqualsPyTorchsFixture) {
  GenerateOptions o{"dualpipev", 4, 10};
  o.with_comm = false;
  EXPECT_EQ(WriteCsv(Generate(o), true), ReadTestdata("peers/pytorch/dualpipev_4rank_10mb.csv"));
}

TEST(DualPipeTest, WithoutOverlapEachPairRunsForwardThenBackward) {
  for (bool v : {false, true}) {
    Schedule overlap = v ? GenerateDualPipeV(4, 10, true) : GenerateDualPipe(4, 10, true);
    Schedule plain = v ? GenerateDualPipeV(4, 10, false) : GenerateDualPipe(4, 10, false);
    for (int r = 0; r < overlap.ranks; ++r) {
      std::vector<Action> expanded;
      for (const Action& a : overlap.program[r]) {
        if (a.op != Op::kOverlapFB) {
          expanded.push_back(a);
          continue;
        }
        expanded.push_back(Action::Compute(Op::kForward, a.stage, a.microbatch));
        expanded.push_back(Action::Compute(a.back.op, a.back.stage, a.back.microbatch));
      }
      EXPECT_EQ(plain.program[r], expanded) << "rank " << r << (v ? " dualpipev" : " dualpipe");
    }
  }
}

TEST(DualPipeTest, TopologyFollowsDesign) {
  Schedule s = GenerateDualPipe(4, 8, true);
  EXPECT_EQ(s.stages, 8);
  EXPECT_EQ(s.placement, (std::vector<int>{0, 1, 2, 3, 3, 2, 1, 0}));
  EXPECT_EQ(s.params, (std::vector<int>{0, 1, 2, 3, 0, 1, 2, 3}));
  EXPECT_EQ(s.routes[3], (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(s.routes[4], (std::vector<int>{4, 5, 6, 7}));
  Schedule v = GenerateDualPipeV(3, 6, true);
  EXPECT_EQ(v.placement, (std::vector<int>{0, 1, 2, 2, 1, 0}));
  EXPECT_EQ(v.routes[5].size(), 6u);
}

struct BadSize {
  const char* kind;
  int ranks, microbatches;
  const char* rule;
};

TEST(GenerateTest, InvalidSizesAreRefusedNamingTheRule) {
  for (const BadSize& bad : {
           BadSize{"dualpipe", 3, 12, "even number of ranks"},
           BadSize{"dualpipe", 4, 9, "even number of microbatches"},
           BadSize{"dualpipe", 4, 6, "at least twice the ranks"},
           BadSize{"dualpipev", 4, 7, "at least twice as many microbatches"},
           BadSize{"interleaved-1f1b", 4, 6, "multiple of the ranks"},
           BadSize{"1f1b", 0, 4, "at least one rank"},
           BadSize{"gpipe", 2, 0, "at least one microbatch"},
           BadSize{"1f1b", 1000000000, 4, "ranks is 1000000000"},
           BadSize{"dualpipe", 1000000000, 2000000000, "ranks"},
           BadSize{"zero-bubble", 2, 2, "unknown schedule kind"},
       }) {
    try {
      Generate({bad.kind, bad.ranks, bad.microbatches});
      ADD_FAILURE() << bad.kind << " " << bad.ranks << "x" << bad.microbatches << " accepted";
    } catch (const InputError& e) {
      EXPECT_NE(e.message().find(bad.rule), std::string::npos) << e.what();
    }
  }
}

// Counted here, independently of the generators: every (stage, microbatch) on a route has one
// forward and either one full backward or one I and one later W, all on the stage's rank.
void ExpectEveryPassOnce(const Schedule& s, const std::string& label) {
  std::map<std::tuple<int, int, Op>, int> count;
  for (int r = 0; r < s.ranks; ++r) {
    for (const Action& a : s.program[r]) {
      for (int t = 0; t < a.TaskCount(); ++t) {
        Task task = a.TaskAt(t);
        if (!IsCompute(task.op)) continue;
        EXPECT_EQ(s.placement[task.stage], r) << label << ": " << ToString(a) << " on rank " << r;
        ++count[{task.stage, task.microbatch, task.op}];
      }
    }
  }
  for (int m = 0; m < s.microbatches; ++m) {
    for (int st : s.routes[m]) {
      EXPECT_EQ((count[{st, m, Op::kForward}]), 1) << label << " F " << st << " mb " << m;
      int b = count[{st, m, Op::kBackward}], i = count[{st, m, Op::kInputGrad}],
          w = count[{st, m, Op::kWeightGrad}];
      EXPECT_TRUE((b == 1 && i == 0 && w == 0) || (b == 0 && i == 1 && w == 1))
          << label << " backward of " << st << " mb " << m << ": B" << b << " I" << i << " W" << w;
    }
  }
}

TEST(GenerateTest, EveryKindComputesEveryPassOnceOnTheRightRank) {
  for (const std::string& kind : GeneratorKinds()) {
    for (int ranks : {1, 2, 3, 4, 6, 8}) {
      for (int factor : {1, 2, 3}) {
        GenerateOptions o{kind, ranks, 2 * ranks * factor};
        if (kind == "dualpipe" && ranks % 2) continue;
        Schedule s = Generate(o);
        std::string label = kind + " " + std::to_string(ranks) + "x" + std::to_string(o.microbatches);
        ExpectEveryPassOnce(s, label);
        EXPECT_EQ(s.kind, kind);
        EXPECT_EQ(HasComm(s), ranks > 1) << label;
      }
    }
  }
}

TEST(GenerateTest, InterleavedHoldsVirtualStagesPerRank) {
  GenerateOptions o{"interleaved-1f1b", 4, 8};
  o.virtual_stages = 3;
  Schedule s = Generate(o);
  EXPECT_EQ(s.stages, 12);
  EXPECT_EQ(s.placement[9], 1);
  ExpectEveryPassOnce(s, "interleaved 4x8 v3");
}

TEST(GenerateTest, OneFOneBWarmsUpWithRanksMinusRankMinusOneForwards) {
  GenerateOptions o{"1f1b", 4, 8};
  o.with_comm = false;
  Schedule s = Generate(o);
  EXPECT_EQ(ToString(s.program[0][3]), "0F3");
  EXPECT_EQ(ToString(s.program[0][4]), "0B0");
  EXPECT_EQ(ToString(s.program[3][0]), "3F0");
  EXPECT_EQ(ToString(s.program[3][1]), "3B0");
}

TEST(GenerateTest, ZeroBubbleDefersTheFirstRankManyWeightGradients) {
  GenerateOptions o{"zb1p", 4, 8};
  o.with_comm = false;
  Schedule s = Generate(o);
  // Rank 2 warms up with one forward, then F I F I before its first W.
  std::vector<std::string> head;
  for (int i = 0; i < 7; ++i) head.push_back(ToString(s.program[2][i]));
  EXPECT_EQ(head, (std::vector<std::string>{"2F0", "2F1", "2I0", "2F2", "2I1", "2F3", "2I2"}));
  EXPECT_EQ(ToString(s.program[2][7]), "2W0");
}

}  // namespace
}  // namespace pipeproof
