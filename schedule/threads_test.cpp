#include "schedule/threads.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <thread>

namespace pipeproof {
namespace {

TEST(BesideTest, ReturnsTheResultAndRethrowsTheError) {
  Beside<int> answer([] { return 42; });
  EXPECT_EQ(answer.get(), 42);
  Beside<int> failing([]() -> int { throw std::runtime_error("no"); });
  EXPECT_THROW(failing.get(), std::runtime_error);
}

TEST(BesideTest, RunsOnAnotherThreadWhereThereIsAnotherCore) {
  const std::thread::id caller = std::this_thread::get_id();
  Beside<std::thread::id> where([] { return std::this_thread::get_id(); });
  const std::thread::id ran_on = where.get();
  if (CoresBesideThisOne()) {
    EXPECT_NE(ran_on, caller);
  } else {
    EXPECT_EQ(ran_on, caller);
  }
}

// Confined to one core (taskset -c 0), there is nothing beside it: get() runs the work.
TEST(BesideTest, OnOneCoreTheCallerRunsIt) {
  std::thread confined([] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
    EXPECT_FALSE(CoresBesideThisOne());
    const std::thread::id caller = std::this_thread::get_id();
    Beside<std::thread::id> where([] { return std::this_thread::get_id(); });
    EXPECT_EQ(where.get(), caller);
  });
  confined.join();
}

}  // namespace
}  // namespace pipeproof
