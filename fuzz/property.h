// PIPEPROOF_PROPERTY: a RapidCheck property as a GoogleTest test, like RC_GTEST_PROP, that also
// prints one summary line whether it passes or fails:
//   [ property ] ExecutionProperties.LegalFaultsAreBitIdentical: OK, passed 40 cases (3 discarded) in 9.1 s
// so that the case counts of every suite stand in the test log (ctest keeps every test's output
// in Testing/Temporary/LastTest.log; scripts/test.sh prints these lines after ctest). A failure
// is a GoogleTest failure with RapidCheck's counterexample; property_main.cpp adds the seed and
// the command that reproduces it.
#pragma once

#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>

namespace pipeproof {

template <typename Testable>
void CheckProperty(Testable&& testable) {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  rc::detail::TestMetadata metadata;
  // The same id as RC_GTEST_PROP's, so that RapidCheck derives the same per-property seed.
  metadata.id = std::string(info->test_suite_name()) + "/" + info->name();
  metadata.description = info->name();
  const auto start = std::chrono::steady_clock::now();
  const rc::detail::TestResult result = rc::detail::checkTestable(std::forward<Testable>(testable), metadata);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string name = std::string(info->test_suite_name()) + "." + info->name();
  if (result.is<rc::detail::SuccessResult>()) {
    const auto& success = result.get<rc::detail::SuccessResult>();
    std::printf("[ property ] %s: OK, passed %d cases in %.1f s\n", name.c_str(), success.numSuccess, seconds);
    if (!success.distribution.empty()) {  // RC_TAG/RC_CLASSIFY counts
      std::ostringstream tags;
      rc::detail::printResultMessage(result, tags);
      std::printf("%s\n", tags.str().c_str());
    }
    std::fflush(stdout);
    return;
  }
  std::ostringstream message;
  rc::detail::printResultMessage(result, message);
  std::printf("[ property ] %s: FAILED after %.1f s\n", name.c_str(), seconds);
  std::fflush(stdout);
  ADD_FAILURE() << message.str();
}

}  // namespace pipeproof

// Defines a property: PIPEPROOF_PROPERTY(Suite, Name, ()) { ... RC_ASSERT(...); }
#define PIPEPROOF_PROPERTY(Suite, Name, ArgList)                         \
  void PipeproofProperty_##Suite##_##Name ArgList;                       \
  TEST(Suite, Name) { ::pipeproof::CheckProperty(&PipeproofProperty_##Suite##_##Name); } \
  void PipeproofProperty_##Suite##_##Name ArgList

// A property that runs only where `condition` holds, and is reported as skipped (with `why`)
// elsewhere: PIPEPROOF_PROPERTY_IF(Suite, Name, HaveZ3(), "built without Z3", ()) { ... }
#define PIPEPROOF_PROPERTY_IF(Suite, Name, condition, why, ArgList)       \
  void PipeproofProperty_##Suite##_##Name ArgList;                       \
  TEST(Suite, Name) {                                                    \
    if (!(condition)) GTEST_SKIP() << why;                               \
    ::pipeproof::CheckProperty(&PipeproofProperty_##Suite##_##Name);     \
  }                                                                      \
  void PipeproofProperty_##Suite##_##Name ArgList
