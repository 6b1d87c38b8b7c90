// Negative controls for fuzz/schedule_gen.h: a property planted to fail on any schedule with a
// WAIT must be shrunk by RapidCheck to the smallest such schedule. This holds only when every
// choice of the generator is a RapidCheck value; a generator that builds its programs from one
// drawn seed shrinks the sizes and the seed, and keeps whatever program that seed happens to give.
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <algorithm>
#include <cstdint>
#include <optional>

#include "fuzz/schedule_gen.h"

namespace pipeproof {
namespace {

int Count(const Schedule& s, bool (*which)(Op)) {
  int n = 0;
  for (const std::vector<Action>& program : s.program) {
    n += static_cast<int>(std::count_if(program.begin(), program.end(),
                                        [&](const Action& a) { return which(a.op); }));
  }
  return n;
}

bool IsWaitOp(Op op) { return op == Op::kWait; }
bool IsWeightGradOp(Op op) { return op == Op::kWeightGrad; }

// Counts the shrinks RapidCheck accepted, for the failure message.
class ShrinkCounter : public rc::detail::TestListener {
 public:
  int accepted = 0;
  void onTestCaseFinished(const rc::detail::CaseDescription&) override {}
  void onShrinkTried(const rc::detail::CaseDescription&, bool ok) override { accepted += ok; }
  void onTestFinished(const rc::detail::TestMetadata&, const rc::detail::TestResult&) override {}
};

struct Shrunk {
  Schedule schedule;  // the last schedule the property failed on: the minimal counterexample
  int shrinks = 0;
};

// Runs "no rank has a WAIT" over GenWellFormedSchedule() from `seed` and returns what it shrank
// to. Fixed parameters, not RC_PARAMS: the control must not depend on the suites' sizes.
std::optional<Shrunk> ShrinkScheduleWithAWait(uint64_t seed) {
  Shrunk shrunk;
  auto property = [&shrunk] {
    const Schedule s = *GenWellFormedSchedule();
    const bool has_wait = Count(s, IsWaitOp) > 0;
    if (has_wait) shrunk.schedule = s;
    RC_ASSERT(!has_wait);
  };
  rc::detail::TestMetadata metadata;
  metadata.id = metadata.description = "ScheduleWithAWait";
  rc::detail::TestParams params;
  params.seed = seed;
  params.maxSuccess = 100;
  ShrinkCounter counter;
  const rc::detail::TestResult result =
      rc::detail::checkProperty(rc::detail::toProperty(property), metadata, params, counter);
  if (!result.is<rc::detail::FailureResult>()) return std::nullopt;
  shrunk.shrinks = counter.accepted;
  return shrunk;
}

// The smallest schedule with a WAIT: two ranks, one microbatch through two stages on different
// ranks, full backwards, one WAIT, and none of the optional runtime actions.
TEST(ScheduleGenProperties, WellFormedScheduleShrinksToTheSmallestWithAWait) {
  for (uint64_t seed : {1u, 2u, 3u, 4u, 5u}) {
    const std::optional<Shrunk> shrunk = ShrinkScheduleWithAWait(seed);
    ASSERT_TRUE(shrunk.has_value()) << "seed " << seed << ": no schedule with a WAIT drawn";
    const Schedule& s = shrunk->schedule;
    SCOPED_TRACE(testing::Message() << "seed " << seed << ", " << shrunk->shrinks
                                    << " shrinks, counterexample:\n" << WritePps(s));
    EXPECT_EQ(s.ranks, 2);
    EXPECT_EQ(s.stages, 2);
    EXPECT_EQ(s.microbatches, 1);
    EXPECT_EQ(Count(s, IsWaitOp), 1);
    EXPECT_EQ(Count(s, IsWaitSend), 0);
    EXPECT_EQ(Count(s, IsDataParallel), 0);
    EXPECT_EQ(Count(s, IsWeightGradOp), 0);
  }
}

}  // namespace
}  // namespace pipeproof
