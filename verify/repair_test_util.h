// For the tests of repair (verify/ and the property suite): the schedule an edit list describes,
// rebuilt from the edits alone, so that a test checks the listed positions rather than trusting
// the diff that produced them.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <utility>
#include <vector>

#include "schedule/generate.h"
#include "schedule/lower.h"
#include "schedule/schedule.h"
#include "verify/repair.h"

namespace pipeproof::testing {

// The computes (and data-parallel actions) of every rank, in order: what repair must not touch.
inline std::vector<std::vector<Action>> Computes(const Schedule& s) { return ComputeOnly(s).program; }

// What re-lowering the compute order changes (with PyTorch's WAIT_SENDs added back where the
// input has them), counted here apart from Repair(): the bound its edits keep, and the figure it
// reports as relowered_edits.
inline int RelowerEdits(const Schedule& in) {
  LoweringResult lowered = Lower(ComputeOnly(in));
  if (!lowered.schedule) throw std::logic_error("the compute order cannot run: " + lowered.problem);
  const bool wait_sends = std::any_of(in.program.begin(), in.program.end(), [](const std::vector<Action>& p) {
    return std::any_of(p.begin(), p.end(), [](const Action& a) { return IsWaitSend(a.op); });
  });
  if (wait_sends) lowered.schedule = AddWaitSends(*lowered.schedule);
  return static_cast<int>(CommunicationDiff(in, *lowered.schedule).size());
}

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
