#include "fuzz/plan_oracle.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include "exec/fault_plan.h"
#include "schedule/errors.h"  // InputError

namespace pipeproof {
namespace {

[[noreturn]] void Violation(std::string_view what, const std::string& detail) {
  std::fprintf(stderr, "fault-plan reader oracle violated: %.*s\n%s\n", static_cast<int>(what.size()),
               what.data(), detail.c_str());
  std::abort();
}

constexpr std::string_view kName = "fuzz-plan";

}  // namespace

void CheckPlanReader(std::string_view data) {
  FaultPlan first;
  try {
    first = ParseFaultPlan(data, kName);
  } catch (const InputError& e) {
    const std::string_view what = e.what();
    if (what.substr(0, kName.size()) != kName || what.find(": error: ") == std::string::npos) {
      Violation("an error must name the file and say 'error:'", std::string(what));
    }
    if (!IsPrintable(what)) Violation("an error must not echo raw bytes", std::string(what));
    return;
  }
  // Everything a reader of the plan prints must work on whatever was read.
  (void)first.Summary();
  (void)first.DescribeNegativeControl();
  (void)first.Empty();
  const std::string written = first.Json();
  FaultPlan second;
  try {
    second = ParseFaultPlan(written, kName);
  } catch (const InputError& e) {
    Violation("the plan's Json() does not read back", std::string(e.what()) + "\n" + written);
  }
  if (!(second == first)) Violation("the round trip changed the plan", written);
}

}  // namespace pipeproof
