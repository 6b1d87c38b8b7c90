// Replays the fuzzers' seed corpus and every input they ever found a bug with
// (fuzz/regressions/<format>/) through the reader oracle, in the ordinary test build.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "fuzz/reader_oracle.h"

namespace pipeproof {
namespace {

namespace fs = std::filesystem;

void ReplayDirectory(const std::string& relative, Format format) {
  const fs::path dir = fs::path(PIPEPROOF_SOURCE_DIR) / "fuzz" / relative;
  if (!fs::exists(dir)) return;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::ostringstream all;
    all << in.rdbuf();
    SCOPED_TRACE(entry.path().string());
    CheckReader(format, all.str());  // aborts on a violation
  }
}

TEST(ReaderRegressionsTest, SeedCorpusAndPastFindingsPassTheOracle) {
  for (auto [name, format] : {std::pair{"pps", Format::kPps}, std::pair{"csv", Format::kCsv},
                              std::pair{"json", Format::kJson}}) {
    ReplayDirectory(std::string("corpus/") + name, format);
    ReplayDirectory(std::string("regressions/") + name, format);
  }
}

}  // namespace
}  // namespace pipeproof
