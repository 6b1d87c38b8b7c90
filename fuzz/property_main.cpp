// main() for the RapidCheck property suites. Every run uses a seed (RC_PARAMS's, or a fresh
// one it adds), prints it, and on a failure prints the one command that replays that run.
//
// Settings come from RC_PARAMS (under ctest: the cache variable PIPEPROOF_RC_PARAMS, shared by
// every suite) and, key by key on top of it, from PIPEPROOF_SUITE_RC_PARAMS (under ctest: the
// suite's own cache variable, such as PIPEPROOF_RC_PARAMS_EXECUTION, which sizes that suite for
// CI). The printed command names the merged settings, so it replays the run exactly.
#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

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

using Settings = std::vector<std::pair<std::string, std::string>>;  // in order of appearance

Settings ParseSettings(const std::string& text) {
  Settings out;
  std::istringstream in(text);
  std::string item;
  while (in >> item) {
    const size_t eq = item.find('=');
    out.push_back({item.substr(0, eq), eq == std::string::npos ? "" : item.substr(eq + 1)});
  }
  return out;
}

// `base` with every key of `over` set to over's value.
Settings Merge(Settings base, const Settings& over) {
  for (const auto& [key, value] : over) {
    bool found = false;
    for (auto& [k, v] : base) {
      if (k == key) {
        v = value;
        found = true;
      }
    }
    if (!found) base.push_back({key, value});
  }
  return base;
}

std::string Format(const Settings& settings) {
  std::string out;
  for (const auto& [key, value] : settings) out += (out.empty() ? "" : " ") + key + "=" + value;
  return out;
}

bool Has(const Settings& settings, const std::string& key) {
  for (const auto& [k, v] : settings) {
    if (k == key) return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  g_program = argv[0];
  const char* given = std::getenv("RC_PARAMS");
  const char* suite = std::getenv("PIPEPROOF_SUITE_RC_PARAMS");
  Settings settings = Merge(ParseSettings(given ? given : ""), ParseSettings(suite ? suite : ""));
  if (!Has(settings, "seed") && !Has(settings, "reproduce")) {
    settings.push_back({"seed", std::to_string(std::random_device{}() % 1000000000ull)});
  }
  g_params = Format(settings);
  setenv("RC_PARAMS", g_params.c_str(), 1);  // read by RapidCheck on first use
  std::cout << "RapidCheck: RC_PARAMS=\"" << g_params << "\"\n";
  ::testing::UnitTest::GetInstance()->listeners().Append(new ReproduceOnFailure);
  return RUN_ALL_TESTS();
}
