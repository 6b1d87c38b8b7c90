// memory: live activations per rank in stage-chunks. A forward keeps its stage's activations for
// one microbatch until that microbatch's B or I on the same stage frees them; an OVERLAP_F_B holds
// its forward's new activations while its backward still holds the old ones, so its forward
// counts first. Deferred weight gradients (I done, W not yet) are counted apart.

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "verify/internal.h"

namespace pipeproof {

namespace verify_internal {

MemoryReport MeasureMemory(const Schedule& s) {
  MemoryReport report;
  report.peak.assign(s.ranks, 0);
  report.peak_index.assign(s.ranks, -1);
  report.stash_peak.assign(s.ranks, 0);
  report.stash_peak_index.assign(s.ranks, -1);
  for (int r = 0; r < s.ranks; ++r) {
    int live = 0, stash = 0;
    const auto& program = s.program[r];
    for (int i = 0; i < static_cast<int>(program.size()); ++i) {
      const Action& a = program[i];
      for (int k = 0; k < a.TaskCount(); ++k) {
        switch (a.TaskAt(k).op) {
          case Op::kForward:
            if (!s.forward_only) ++live;  // no backward will need them
            break;
          case Op::kBackward:
            --live;
            break;
          case Op::kInputGrad:
            --live;
            ++stash;
            break;
          case Op::kWeightGrad:
            --stash;
            break;
          default:
            break;
        }
        if (live > report.peak[r]) {
          report.peak[r] = live;
          report.peak_index[r] = i;
        }
        if (stash > report.stash_peak[r]) {
          report.stash_peak[r] = stash;
          report.stash_peak_index[r] = i;
        }
      }
    }
  }
  return report;
}

CheckResult CheckMemory(const Schedule& s, const MemoryReport& report) {
  CheckResult check;
  check.name = "memory";
  if (s.ranks == 0) return check;
  const int worst = static_cast<int>(std::max_element(report.peak.begin(), report.peak.end()) -
                                     report.peak.begin());
  const int stash_worst =
      static_cast<int>(std::max_element(report.stash_peak.begin(), report.stash_peak.end()) -
                       report.stash_peak.begin());
  auto at = [&](int rank, int index) {
    return index < 0 ? fmt::format("rank {}", rank) : Where(s, rank, index);
  };
  const std::string peak = fmt::format("peak {} stage-chunks of activations ({})",
                                       report.peak[worst], at(worst, report.peak_index[worst]));
  const std::string stash =
      fmt::format("weight-gradient stash peak {} ({})", report.stash_peak[stash_worst],
                  at(stash_worst, report.stash_peak_index[stash_worst]));
  check.details.push_back(fmt::format("peak per rank:       {}", fmt::join(report.peak, " ")));
  check.details.push_back(
      fmt::format("stash peak per rank: {}", fmt::join(report.stash_peak, " ")));
  if (!report.bound) {
    check.message = fmt::format("{}; no bound (give --max-activations K); {}", peak, stash);
    return check;
  }
  const int bound = *report.bound;
  if (report.peak[worst] <= bound) {
    check.message =
        fmt::format("{}, within the bound {} ({}); {}", peak, bound, report.bound_source, stash);
    return check;
  }
  check.status = CheckStatus::kFail;
  int over = 0;
  for (int r = 0; r < s.ranks; ++r) over += report.peak[r] > bound;
  check.message = fmt::format("{} exceeds the bound {} ({}) on {} rank{}; {}", peak, bound,
                              report.bound_source, over, over == 1 ? "" : "s", stash);
  return check;
}

}  // namespace verify_internal
}  // namespace pipeproof
