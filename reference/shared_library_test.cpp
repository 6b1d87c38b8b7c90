#include "reference/shared_library.h"

#include <gtest/gtest.h>

namespace pipeproof {
namespace {

constexpr const char* kFixture = "libpipeproof_shared_library_fixture.so";

TEST(SharedLibraryTest, FindsALibraryInTheFallbackDirectoryOnly) {
  EXPECT_EQ(OpenSharedLibrary(kFixture, "/nonexistent"), nullptr);
  EXPECT_NE(OpenSharedLibrary(kFixture, PIPEPROOF_FIXTURE_DIR), nullptr);
}

TEST(SharedLibraryTest, BindsTheFunctionsItHasAndNoOthers) {
  void* library = OpenSharedLibrary(kFixture, PIPEPROOF_FIXTURE_DIR);
  ASSERT_NE(library, nullptr);
  int (*answer)() = nullptr;
  ASSERT_TRUE(BindSymbol(library, answer, "pipeproof_fixture_answer"));
  EXPECT_EQ(answer(), 42);
  EXPECT_FALSE(BindSymbol(library, answer, "pipeproof_fixture_question"));
  EXPECT_EQ(answer, nullptr);
}

}  // namespace
}  // namespace pipeproof
