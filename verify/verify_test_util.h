// Conveniences of verify/'s tests: schedules from text or a generator, and a report's failing
// checks by name. The ground truth and the mutations they are judged against are the ones every
// test shares: fuzz/schedule_truth.h and fuzz/schedule_mutation.h.
#pragma once

#include <string>
#include <vector>

#include "schedule/schedule.h"
#include "verify/verify.h"

namespace pipeproof::testing {

// A .pps text (header + "rank r:" lines) as a schedule.
Schedule Pps(const std::string& text);
Schedule Generated(const std::string& kind, int ranks, int microbatches, bool overlap = true);

// The names of the checks that failed, in order.
std::vector<std::string> FailedChecks(const VerifyReport& report);

}  // namespace pipeproof::testing
