// Files that hold only actions (PyTorch CSV, bare "rank r:" lines): the rows as read, and the
// schedule they make once the topology is taken from options or inferred. Internal to schedule/.
#pragma once

#include <string_view>
#include <vector>

#include "schedule/formats.h"

namespace pipeproof {

struct LocatedAction {
  Action action;
  int line = 0;
  int col = 0;
};
using ActionRows = std::vector<std::vector<LocatedAction>>;  // one row per rank

Schedule FromActionRows(const ActionRows& rows, std::string_view name,
                        const TopologyOptions& topology);

}  // namespace pipeproof
