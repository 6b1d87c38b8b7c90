// Helpers shared by schedule/ tests.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

namespace pipeproof::testing {

inline std::string ReadTestdata(const std::string& relative) {
  std::ifstream in(std::string(PIPEPROOF_TESTDATA_DIR) + "/" + relative, std::ios::binary);
  std::ostringstream all;
  all << in.rdbuf();
  return all.str();
}

inline std::string TestdataPath(const std::string& relative) {
  return std::string(PIPEPROOF_TESTDATA_DIR) + "/" + relative;
}

}  // namespace pipeproof::testing
