// Replays the fuzzers' seed corpus and every input they ever found a bug with
// (fuzz/regressions/<format>/) through the reader oracle, in the ordinary test build.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <fstream>
#include <sstream>

#include "fuzz/plan_oracle.h"
#include "fuzz/reader_oracle.h"

namespace pipeproof {
namespace {

namespace fs = std::filesystem;

// Calls check(bytes) on every file in fuzz/<relative>; returns how many there were.
int ReplayDirectory(const std::string& relative, const std::function<void(std::string_view)>& check) {
  const fs::path dir = fs::path(PIPEPROOF_SOURCE_DIR) / "fuzz" / relative;
  if (!fs::exists(dir)) return 0;
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::ostringstream all;
    all << in.rdbuf();
    SCOPED_TRACE(entry.path().string());
    check(all.str());  // aborts on a violation
    ++files;
  }
  return files;
}

void ReplayDirectory(const std::string& relative, Format format) {
  ReplayDirectory(relative, [format](std::string_view data) { CheckReader(format, data); });
}

TEST(ReaderRegressionsTest, SeedCorpusAndPastFindingsPassTheOracle) {
  for (auto [name, format] : {std::pair{"pps", Format::kPps}, std::pair{"csv", Format::kCsv},
                              std::pair{"json", Format::kJson}}) {
    ReplayDirectory(std::string("corpus/") + name, format);
    ReplayDirectory(std::string("regressions/") + name, format);
  }
}

TEST(ReaderRegressionsTest, FaultPlanSeedCorpusAndPastFindingsPassTheOracle) {
  EXPECT_GT(ReplayDirectory("corpus/plan", CheckPlanReader), 5);
  ReplayDirectory("regressions/plan", CheckPlanReader);
}

}  // namespace
}  // namespace pipeproof
