// main() for the RapidCheck property suites. Every run uses a seed (RC_PARAMS's, or a fresh
// one it adds), prints it, and on a failure prints the one command that replays that run.
#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>
#include <random>
#include <string>

namespace {

std::string g_params;
std::string g_program;

class ReproduceOnFailure : public ::testing::EmptyTestEventListener {
  void OnTestEnd(const ::testing::TestInfo& test) override {
    if (!test.result()->Failed()) return;
    std::cout << "\nreproduce with:\n  RC_PARAMS=\"" << g_params << "\" " << g_program
              << " --gtest_filter=" << test.test_suite_name() << "." << test.name() << "\n\n";
  }
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  g_program = argv[0];
  const char* given = std::getenv("RC_PARAMS");
  g_params = given ? given : "";
  if (g_params.find("seed=") == std::string::npos && g_params.find("reproduce=") == std::string::npos) {
    const uint64_t seed = std::random_device{}() % 1000000000ull;
    g_params = (g_params.empty() ? "" : g_params + " ") + "seed=" + std::to_string(seed);
    setenv("RC_PARAMS", g_params.c_str(), 1);  // read by RapidCheck on first use
  }
  std::cout << "RapidCheck: RC_PARAMS=\"" << g_params << "\"\n";
  ::testing::UnitTest::GetInstance()->listeners().Append(new ReproduceOnFailure);
  return RUN_ALL_TESTS();
}
