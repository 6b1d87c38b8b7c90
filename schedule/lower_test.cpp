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
