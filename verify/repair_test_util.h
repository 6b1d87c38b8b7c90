// For the tests of repair (verify/ and the property suite): the schedule an edit list describes,
// rebuilt from the edits alone, so that a test checks the listed positions rather than trusting
// the diff that produced them.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <utility>
#include <vector>

#include "schedule/schedule.h"
#include "verify/repair.h"

namespace pipeproof::testing {

// Each rank's removed and moved ops taken out at their `from` positions (each must hold the op
// the edit names), then the added and moved ones written at their `to` positions, lowest first.
inline Schedule ApplyEdits(const Schedule& original, const std::vector<RepairEdit>& edits) {
  Schedule out = original;
  for (int r = 0; r < static_cast<int>(out.program.size()); ++r) {
    const std::vector<Action>& before = original.program[r];
    std::vector<bool> taken(before.size(), false);
    std::vector<std::pair<int, Action>> written;
    for (const RepairEdit& e : edits) {
      if (e.rank != r) continue;
      if (e.kind != RepairEdit::Kind::kAdd) {
        if (e.from < 0 || e.from >= static_cast<int>(before.size()) || ToString(before[e.from]) != e.action) {
          throw std::logic_error("edit names an op that is not at its position: " + Describe(e));
        }
        taken[e.from] = true;
      }
      if (e.kind != RepairEdit::Kind::kRemove) written.push_back({e.to, ParseAction(e.action)});
    }
    std::vector<Action>& after = out.program[r];
    after.clear();
    for (size_t i = 0; i < before.size(); ++i) {
      if (!taken[i]) after.push_back(before[i]);
    }
    std::sort(written.begin(), written.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [to, action] : written) {
      if (to < 0 || to > static_cast<int>(after.size())) throw std::logic_error("edit writes past the program's end");
      after.insert(after.begin() + to, action);
    }
  }
  return out;
}

}  // namespace pipeproof::testing
