#include "verify/verify_test_util.h"

#include "schedule/formats.h"
#include "schedule/generate.h"

namespace pipeproof::testing {

Schedule Pps(const std::string& text) { return ParsePps(text, "test.pps"); }

Schedule Generated(const std::string& kind, int ranks, int microbatches, bool overlap) {
  return Generate({.kind = kind, .ranks = ranks, .microbatches = microbatches, .overlap = overlap});
}

std::vector<std::string> FailedChecks(const VerifyReport& report) {
  std::vector<std::string> out;
  for (const CheckResult& c : report.checks) {
    if (!c.ok()) out.push_back(c.name);
  }
  return out;
}

}  // namespace pipeproof::testing
