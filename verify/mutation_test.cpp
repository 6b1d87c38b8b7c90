// Negative controls: systematically mutated generated schedules (fuzz/schedule_mutation.h), each
// verdict compared with the ground truth of fuzz/schedule_truth.h, computed from the definitions
// (for deadlock, a step-by-step run of the mutated program). The table printed at the end is the mutation score
// per class: how many mutants each class made, how many are really broken, how many of those
// the verifier caught, and whether it named the same failing checks as the ground truth.

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

#include "fuzz/schedule_mutation.h"
#include "fuzz/schedule_truth.h"
#include "schedule/formats.h"
#include "verify/verify.h"
#include "verify/verify_test_util.h"

namespace pipeproof {
namespace {

struct Score {
  int mutants = 0, broken = 0, caught = 0, same_checks = 0;
  std::map<std::string, int> first_check;
};

std::vector<Schedule> Bases() {
  std::vector<Schedule> out;
  const std::vector<std::tuple<std::string, int, int>> sizes = {{"dualpipe", 2, 4},
                                                                {"dualpipe", 4, 8},
                                                                {"dualpipe", 4, 10},
                                                                {"dualpipev", 2, 4},
                                                                {"dualpipev", 3, 6},
                                                                {"dualpipev", 4, 8},
                                                                {"1f1b", 3, 6},
                                                                {"1f1b", 4, 4},
                                                                {"zb1p", 3, 6},
                                                                {"gpipe", 2, 4},
                                                                {"interleaved-1f1b", 2, 4}};
  for (const auto& [kind, r, m] : sizes) {
    out.push_back(testing::Generated(kind, r, m, true));
    if (kind == "dualpipe" || kind == "dualpipev")
      out.push_back(testing::Generated(kind, r, m, false));
  }
  return out;
}

TEST(Mutation, VerdictsMatchTheGroundTruth) {
  std::mt19937 rng(20241122);
  std::map<MutationClass, Score> scores;
  const std::vector<Schedule> bases = Bases();
  for (const Schedule& base : bases) {
    for (MutationClass m : AllMutationClasses()) {
      for (int attempt = 0; attempt < 7; ++attempt) {
        Schedule mutant = base;
        if (Mutate(mutant, m, rng()).empty()) continue;
        const CommModel model = attempt == 6 ? CommModel::kEager : CommModel::kNccl;
        const std::vector<std::string> judged = truth::Judge(mutant, model).FailingChecks();
        const VerifyReport report = Verify(mutant, {.model = model, .use_z3 = false});
        const std::vector<std::string> got = testing::FailedChecks(report);
        Score& score = scores[m];
        ++score.mutants;
        score.broken += !judged.empty();
        score.caught += !judged.empty() && !report.ok;
        score.same_checks += judged == got;
        score.first_check[got.empty() ? "sound" : got.front()]++;
        ASSERT_EQ(got, judged) << MutationClassName(m) << " of " << base.kind << " ("
                              << CommModelName(model) << ")\n"
                              << WritePps(mutant) << "\n"
                              << report.Text();
        if (const std::string expected = AlwaysFailingCheck(m); !expected.empty()) {
          ASSERT_NE(std::find(got.begin(), got.end(), expected), got.end())
              << MutationClassName(m) << "\n"
              << report.Text();
        }
      }
    }
  }
  std::printf("[ mutation ] %-32s %7s %7s %7s %9s  first failing check\n", "class", "mutants",
              "broken", "caught", "agree");
  int total = 0;
  for (const auto& [m, s] : scores) {
    std::string firsts;
    for (const auto& [name, n] : s.first_check) firsts += name + ":" + std::to_string(n) + " ";
    std::printf("[ mutation ] %-32s %7d %7d %7d %8.0f%%  %s\n", MutationClassName(m).c_str(),
                s.mutants, s.broken, s.caught, 100.0 * s.same_checks / s.mutants, firsts.c_str());
    EXPECT_EQ(s.caught, s.broken) << MutationClassName(m);
    EXPECT_GT(s.mutants, 10) << MutationClassName(m);
    total += s.mutants;
  }
  EXPECT_GT(total, 1000);
}

}  // namespace
}  // namespace pipeproof
