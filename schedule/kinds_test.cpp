#include "schedule/kinds.h"

#include <gtest/gtest.h>

#include <set>

namespace pipeproof {
namespace {

TEST(DrawCaseTest, ValidSizesFollowEachGeneratorsRules) {
  EXPECT_EQ(ValidRanks("dualpipe", 7), (std::vector<int>{2, 4, 6}));
  EXPECT_EQ(ValidRanks("1f1b", 4), (std::vector<int>{2, 3, 4}));
  EXPECT_EQ(ValidMicrobatches("dualpipe", 2, 9), (std::vector<int>{4, 6, 8}));
  EXPECT_EQ(ValidMicrobatches("dualpipev", 3, 7), (std::vector<int>{6, 7}));
  EXPECT_EQ(ValidMicrobatches("interleaved-1f1b", 3, 9), (std::vector<int>{3, 6, 9}));
  EXPECT_EQ(ValidMicrobatches("gpipe", 2, 3), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(ValidMicrobatches("dualpipe", 4, 2), (std::vector<int>{8}));  // at least the minimum
}

TEST(ScheduleKindsTest, ValidSizesStartWhereAsked) {
  EXPECT_EQ(ValidRanks("1f1b", 3, /*min_ranks=*/1), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(ValidRanks("dualpipe", 1), (std::vector<int>{2}));  // at least the smallest valid
  EXPECT_THROW(ValidRanks("no-such-kind", 4), InputError);
  EXPECT_THROW(ValidMicrobatches("dualpipe", 3, 12), InputError);  // no M fits 3 ranks
}

// Every row's rule, generator and bound agree: each valid size generates a schedule of that
// kind and size, with a bound of its kind (verify/memory_test checks that the schedules keep
// it); each size the rule refuses, Generate refuses with the rule's own sentence.
TEST(ScheduleKindsTest, EveryRowsRuleGeneratorAndBoundAgree) {
  std::set<std::string> names;
  for (const ScheduleKind& kind : ScheduleKinds()) {
    SCOPED_TRACE(kind.name);
    EXPECT_TRUE(names.insert(kind.name).second) << "two rows named " << kind.name;
    EXPECT_EQ(FindScheduleKind(kind.name), &kind);
    for (int r = 1; r <= 4; ++r) {
      for (int m = 1; m <= 10; ++m) {
        GenerateOptions o{.kind = kind.name, .ranks = r, .microbatches = m};
        const std::string rule = kind.size_problem(o);
        if (!rule.empty()) {
          try {
            Generate(o);
            ADD_FAILURE() << r << "x" << m << " generated despite: " << rule;
          } catch (const InputError& e) {
            EXPECT_EQ(e.message(), rule);
          }
          continue;
        }
        const Schedule s = Generate(o);
        EXPECT_EQ(s.kind, kind.name);
        EXPECT_EQ(s.ranks, r);
        EXPECT_EQ(s.microbatches, m);
        const std::optional<ActivationBound> bound = KindActivationBound(s);
        ASSERT_TRUE(bound.has_value()) << r << "x" << m;
        EXPECT_GE(bound->bound, 1);
        EXPECT_NE(bound->source.find(kind.name), std::string::npos) << bound->source;
      }
    }
  }
}

TEST(ScheduleKindsTest, AnUnknownKindHasNoRowAndNoBound) {
  EXPECT_EQ(FindScheduleKind("gpipe2"), nullptr);
  Schedule s = Generate({.kind = "1f1b", .ranks = 2, .microbatches = 2});
  s.kind = "";
  EXPECT_FALSE(KindActivationBound(s).has_value());
  s.kind = "custom";
  EXPECT_FALSE(KindActivationBound(s).has_value());
}

}  // namespace
}  // namespace pipeproof
