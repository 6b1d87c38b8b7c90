#include "schedule/lower.h"

#include <gtest/gtest.h>

#include <map>

#include "schedule/formats.h"
#include "schedule/generate.h"
#include "schedule/test_util.h"

namespace pipeproof {
namespace {

// Checked here, independently of Lower: per ordered rank pair the sends and receives carry the
// same payloads in the same order, and all ranks' SEND/RECVs fit one global order (the graph of
// program order plus "a send and its receive are one event" has no cycle), which is what lets
// rendezvous communication finish.
void ExpectConsistentMessages(const Schedule& s) {
  RouteIndex routes(s);
  using Pair = std::pair<int, int>;
  std::map<Pair, std::vector<std::pair<Payload, int>>> sends, recvs;  // payload, index
  for (int r = 0; r < s.ranks; ++r) {
    for (int i = 0; i < static_cast<int>(s.program[r].size()); ++i) {
      const Action& a = s.program[r][i];
      if (!IsComm(a.op)) continue;
      auto m = MessageOf(s, routes, a.TaskAt(0));
      ASSERT_TRUE(m) << ToString(a);
      ASSERT_NE(m->peer, r) << ToString(a);
      if (IsSend(a.op)) sends[{r, m->peer}].push_back({m->payload, i});
      if (IsRecv(a.op)) recvs[{m->peer, r}].push_back({m->payload, i});
    }
  }
  ASSERT_EQ(sends.size(), recvs.size());
  // Event graph: node per matched message; edge when a rank meets message a before b.
  std::map<std::tuple<int, int, int>, int> node;  // (from, to, k) -> id
  std::vector<std::vector<std::pair<int, int>>> rank_events(s.ranks);  // (index, node)
  for (auto& [pair, list] : sends) {
    const auto& other = recvs[pair];
    ASSERT_EQ(list.size(), other.size());
    for (size_t k = 0; k < list.size(); ++k) {
      EXPECT_EQ(list[k].first, other[k].first);
      int id = static_cast<int>(node.size());
      node[{pair.first, pair.second, static_cast<int>(k)}] = id;
      rank_events[pair.first].push_back({list[k].second, id});
      rank_events[pair.second].push_back({other[k].second, id});
    }
  }
  std::vector<std::vector<int>> edges(node.size());
  std::vector<int> indegree(node.size(), 0);
  for (auto& events : rank_events) {
    std::sort(events.begin(), events.end());
    for (size_t k = 1; k < events.size(); ++k) {
      edges[events[k - 1].second].push_back(events[k].second);
      ++indegree[events[k].second];
    }
  }
  std::vector<int> ready;
  for (size_t v = 0; v < node.size(); ++v) {
    if (indegree[v] == 0) ready.push_back(static_cast<int>(v));
  }
  size_t seen = 0;
  while (!ready.empty()) {
    int v = ready.back();
    ready.pop_back();
    ++seen;
    for (int w : edges[v]) {
      if (--indegree[w] == 0) ready.push_back(w);
    }
  }
  EXPECT_EQ(seen, node.size()) << "the ranks meet their messages in conflicting orders";
}

TEST(LowerTest, GeneratedComputeOrdersGetConsistentMessages) {
  for (const std::string& kind : GeneratorKinds()) {
    for (int ranks : {2, 3, 4, 8}) {
      if (kind == "dualpipe" && ranks % 2) continue;
      GenerateOptions o{kind, ranks, 4 * ranks};
      o.with_comm = false;
      LoweringResult lowered = Lower(Generate(o));
      ASSERT_TRUE(lowered.schedule) << kind << ": " << lowered.problem;
      EXPECT_EQ(ComputeOnly(*lowered.schedule), Generate(o)) << kind;
      ExpectConsistentMessages(*lowered.schedule);
    }
  }
}

TEST(LowerTest, PyTorchsComputeOnlyFixturesLower) {
  for (const char* file : {"dualpipev_4rank_10mb.csv", "zb1p_2rank_2stagep_compute.csv"}) {
    ReadOptions o;
    o.topology.legacy_bw = true;
    Schedule s = ReadScheduleFile(testing::TestdataPath(std::string("peers/pytorch/") + file), o);
    LoweringResult lowered = Lower(s);
    ASSERT_TRUE(lowered.schedule) << file << ": " << lowered.problem;
    ExpectConsistentMessages(*lowered.schedule);
  }
}

// PyTorch's compute-only orders carry data-parallel actions (GPipe's REDUCE_GRAD since 2.15):
// lowering keeps each where it stood among the computes, and only adds SEND/RECV.
TEST(LowerTest, DataParallelActionsKeepTheirPlaceAmongTheComputes) {
  Schedule s = ReadScheduleFile(testing::TestdataPath("peers/pytorch/torch-2.15/gpipe_2rank_2mb_compute.csv"));
  ASSERT_FALSE(HasComm(s));
  LoweringResult lowered = Lower(s);
  ASSERT_TRUE(lowered.schedule) << lowered.problem;
  for (int r = 0; r < s.ranks; ++r) {
    std::vector<Action> kept;
    for (const Action& a : lowered.schedule->program[r]) {
      if (!IsComm(a.op)) kept.push_back(a);
    }
    EXPECT_EQ(kept, s.program[r]) << "rank " << r;
  }
  // The last compute of rank 1 sends its gradient after it, and REDUCE_GRAD stays right after it.
  const std::vector<Action>& rank1 = lowered.schedule->program[1];
  const auto b1 = std::find(rank1.begin(), rank1.end(), Action::Compute(Op::kBackward, 1, 1));
  ASSERT_NE(b1, rank1.end());
  EXPECT_EQ(*(b1 + 1), Action::DataParallel(Op::kReduceGrad, 1));
  ExpectConsistentMessages(*lowered.schedule);
}

// PyTorch's _add_wait_send: a SEND_F is waited for right after its stage's backward, the others at
// the end; ranks with WAIT groups are left alone.
TEST(AddWaitSendsTest, WaitsWherePyTorchsRuntimePutsThem) {
  const Schedule s = AddWaitSends(Generate({"1f1b", 2, 2}));
  EXPECT_EQ(WriteCsv(s, false),
            "0F0,0SEND_F0,0F1,0SEND_F1,0RECV_B0,0B0,0WAIT_SEND_F0,0RECV_B1,0B1,0WAIT_SEND_F1\n"
            "1RECV_F0,1F0,1RECV_F1,1B0,1SEND_B0,1F1,1B1,1SEND_B1,1WAIT_SEND_B0,1WAIT_SEND_B1\n");
  const Schedule dualpipe = Generate({"dualpipe", 2, 4});
  EXPECT_EQ(AddWaitSends(dualpipe), dualpipe);
  EXPECT_EQ(AddWaitSends(s), s);  // already waited for
}

TEST(LowerTest, AnImpossibleComputeOrderIsExplained) {
  // Rank 0 wants microbatch 1's gradient before it has sent microbatch 1 forward.
  Schedule s = ParseCsv("0F0,0B1,0F1,0B0\n1F0,1F1,1B1,1B0\n", "x.csv", {});
  LoweringResult lowered = Lower(s);
  ASSERT_FALSE(lowered.schedule);
  EXPECT_NE(lowered.problem.find("rank 0 [1] 0B1 waits for 0F1"), std::string::npos)
      << lowered.problem;
  EXPECT_NE(lowered.problem.find("behind its own wait"), std::string::npos) << lowered.problem;
}

TEST(LowerTest, RefusesASchedulesThatAlreadyCommunicates) {
  EXPECT_THROW(Lower(Generate({"1f1b", 2, 2})), InputError);
}

}  // namespace
}  // namespace pipeproof
