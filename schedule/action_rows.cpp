#include "schedule/action_rows.h"
#include "schedule/kinds.h"

#include <fmt/format.h>

#include <algorithm>

#include "schedule/generate.h"

namespace pipeproof {
namespace {

// Each stage on the one row where its actions stand (every action names a stage of its rank).
std::vector<int> InferPlacement(const ActionRows& rows, int stages, std::string_view name) {
  std::vector<int> placement(stages, -1);
  std::vector<const LocatedAction*> first(stages, nullptr);
  for (int r = 0; r < static_cast<int>(rows.size()); ++r) {
    for (const LocatedAction& c : rows[r]) {
      for (int t = 0; t < c.action.TaskCount(); ++t) {
        int st = c.action.TaskAt(t).stage;
        if (placement[st] == -1) {
          placement[st] = r;
          first[st] = &c;
        } else if (placement[st] != r) {
          throw InputError::At(
              name, c.line, c.col,
              fmt::format("stage {} has actions on rank {} (line {}, column {}) and on rank {}; "
                          "give the placement with --placement",
                          st, placement[st], first[st]->line, first[st]->col, r));
        }
      }
    }
  }
  const int ranks = static_cast<int>(rows.size());
  for (int st = 0; st < stages; ++st) {
    if (placement[st] == -1) placement[st] = st % ranks;
  }
  return placement;
}

}  // namespace

Schedule FromActionRows(const ActionRows& rows, std::string_view name,
                        const TopologyOptions& topo) {
  int max_stage = -1, max_mb = -1;
  for (const auto& row : rows) {
    for (const LocatedAction& c : row) {
      for (int t = 0; t < c.action.TaskCount(); ++t) {
        max_stage = std::max(max_stage, c.action.TaskAt(t).stage);
        max_mb = std::max(max_mb, c.action.TaskAt(t).microbatch);
      }
    }
  }
  if (rows.empty()) throw InputError::At(name, 1, 0, "no schedule here: the file has no rank rows");
  if (max_stage < 0 && (!topo.stages || !topo.microbatches)) {
    throw InputError::At(name, 1, 0,
                         "no schedule here: the file names no stage or microbatch (give "
                         "--stages and --microbatches for a schedule without computes)");
  }

  auto fail = [&](const std::string& message) { throw InputError::At(name, 0, 0, message); };
  Schedule s;
  s.ranks = static_cast<int>(rows.size());
  s.stages = topo.stages.value_or(max_stage + 1);
  s.microbatches = topo.microbatches.value_or(max_mb + 1);
  try {
    CheckLimits(s.ranks, s.stages, s.microbatches);
  } catch (const InputError& e) {
    fail(e.message());
  }
  for (const auto& row : rows) {
    for (const LocatedAction& c : row) {
      for (int t = 0; t < c.action.TaskCount(); ++t) {
        Task task = c.action.TaskAt(t);
        if (task.stage >= s.stages || task.microbatch >= s.microbatches) {
          throw InputError::At(
              name, c.line, c.col,
              fmt::format("{} is outside the schedule's {} stages and {} microbatches",
                          ToString(c.action), s.stages, s.microbatches));
        }
      }
    }
  }
  if (!topo.kind.empty()) {
    // A generator's topology: its placement, shared parameters and routes.
    GenerateOptions options{topo.kind, s.ranks, s.microbatches};
    options.with_comm = false;
    Schedule shape;
    try {
      if (ScheduleKindNamed(topo.kind).uses_virtual_stages) options.virtual_stages = std::max(1, s.stages / s.ranks);
      shape = Generate(options);
    } catch (const InputError& e) {
      fail(fmt::format("--kind {}: {}", topo.kind, e.message()));
    }
    if (shape.stages != s.stages) {
      fail(fmt::format("--kind {} with {} ranks has {} stages, but the file has {}", topo.kind,
                       s.ranks, shape.stages, s.stages));
    }
    s.kind = shape.kind;
    s.placement = shape.placement;
    s.params = shape.params;
    s.routes = shape.routes;
  }
  if (topo.placement) {
    try {
      s.placement = ParsePlacement(*topo.placement, s.ranks, s.stages);
    } catch (const InputError& e) {
      fail("--placement: " + e.message());
    }
  } else if (topo.kind.empty()) {
    s.placement = InferPlacement(rows, s.stages, name);
  }
  s.program.resize(s.ranks);
  for (int r = 0; r < s.ranks; ++r) {
    s.program[r].reserve(rows[r].size());
    for (const LocatedAction& c : rows[r]) s.program[r].push_back(c.action);
  }
  try {
    CompleteTopology(s);
  } catch (const InputError& e) {
    fail(e.message());
  }
  return s;
}

}  // namespace pipeproof
