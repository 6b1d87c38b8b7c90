// PyTorch's CSV schedules: one row per rank, no header, one action per cell, empty cell = idle.
// Idle cells only align the rows in time; they are not kept.

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "schedule/action_rows.h"
#include "schedule/text_scan.h"

namespace pipeproof {
namespace {

// Calls f(cell) for each non-idle cell of one CSV line: spaces around it and PyTorch's quotes
// taken off.
template <typename F>
void ForEachCell(std::string_view line, F&& f) {
  for (size_t pos = 0; pos <= line.size();) {
    const size_t comma = std::min(line.find(',', pos), line.size());
    std::string_view cell = line.substr(pos, comma - pos);
    pos = comma + 1;
    while (!cell.empty() && (cell.front() == ' ' || cell.front() == '\t')) cell.remove_prefix(1);
    while (!cell.empty() && (cell.back() == ' ' || cell.back() == '\t' || cell.back() == '\r')) {
      cell.remove_suffix(1);
    }
    if (cell.size() >= 2 && cell.front() == '"' && cell.back() == '"') cell = cell.substr(1, cell.size() - 2);
    if (!cell.empty()) f(cell);  // an empty cell is an idle slot
  }
}

// PyTorch's legacy spelling wrote the input-gradient backward as B and the weight gradient as
// a later W; read with legacy_bw, such a B becomes I. Without it, say what the file is.
void ResolveLegacyBackward(std::vector<LocatedAction>& row, const LineScanner& line,
                           bool legacy_bw) {
  std::map<std::pair<int, int>, size_t> last_backward;  // (stage, mb) -> index of its B
  for (size_t i = 0; i < row.size(); ++i) {
    Action& a = row[i].action;
    if (a.op == Op::kBackward) last_backward[{a.stage, a.microbatch}] = i;
    if (a.op != Op::kWeightGrad) continue;
    auto it = last_backward.find({a.stage, a.microbatch});
    if (it == last_backward.end()) continue;
    LocatedAction& b = row[it->second];
    if (legacy_bw) {
      b.action.op = Op::kInputGrad;
      last_backward.erase(it);
    } else {
      line.Fail({{}, row[i].col},
                fmt::format("{} needs an earlier {}I{}, but the backward at column {} is {}, a "
                            "full backward; this file uses PyTorch's legacy B/W spelling (B "
                            "then W), read it with --legacy-bw",
                            ToString(a), a.stage, a.microbatch, b.col, ToString(b.action)));
    }
  }
}

}  // namespace

Schedule ParseCsv(std::string_view text, std::string_view name, const TopologyOptions& topo) {
  ActionRows rows;
  int last_nonempty = 0;
  int64_t total = 0;
  TextLines lines(text, name);
  while (auto next = lines.Next()) {
    LineScanner& line = *next;
    if (rows.size() >= static_cast<size_t>(kMaxRanks)) {
      line.Fail(line.Start(), fmt::format("more than {} rows (one row per rank)", kMaxRanks));
    }
    std::vector<LocatedAction> row;
    std::string_view rest = line.Raw();  // CSV has no comments: a '#' is a bad cell
    const char* line_start = rest.data();
    ForEachCell(rest, [&](std::string_view cell) {
      Word where{cell, 1 + static_cast<int>(cell.data() - line_start)};
      if (++total > kMaxActions) line.Fail(where, fmt::format("more than {} actions", kMaxActions));
      row.push_back({line.ParseActionAt(where, {.legacy_bw = topo.legacy_bw}), line.number(),
                     where.col});
    });
    ResolveLegacyBackward(row, line, topo.legacy_bw);
    if (rest.find_first_not_of(" \t\r") != std::string_view::npos) last_nonempty = line.number();
    rows.push_back(std::move(row));
  }
  rows.resize(last_nonempty);  // trailing blank lines are not ranks
  return FromActionRows(rows, name, topo);
}

std::string WriteCsv(const Schedule& s, bool compute_only) {
  if (s.forward_only) {
    // Read back, it would be a training schedule missing every backward.
    throw InputError("a forward-only schedule cannot be written as PyTorch's CSV, which has no way "
                     "to say so: write .pps or .json");
  }
  std::string out;
  for (int r = 0; r < s.ranks; ++r) {
    bool first = true;
    for (const Action& a : s.program[r]) {
      // PyTorch's compute-only orders keep the data-parallel actions (REDUCE_GRAD since 2.15).
      if (compute_only && !IsCompute(a.op) && !IsDataParallel(a.op)) continue;
      if (!first) out += ',';
      out += ToString(a);
      first = false;
    }
    // A rank with nothing to do is one idle slot: a blank line at the end would be no rank.
    out += first ? ",\n" : "\n";
  }
  return out;
}

std::string RewriteCsv(std::string_view original, const Schedule& s) {
  // Each row's computes and data-parallel actions as the file spells them (PyTorch's legacy BW, say).
  std::vector<std::vector<std::string_view>> fixed;
  for (size_t start = 0; start < original.size();) {
    size_t end = original.find('\n', start);
    if (end == std::string_view::npos) end = original.size();
    std::vector<std::string_view>& row = fixed.emplace_back();
    bool readable = true;
    ForEachCell(original.substr(start, end - start), [&](std::string_view cell) {
      try {
        const Action a = ParseAction(cell, {.legacy_bw = true});
        if (IsCompute(a.op) || IsDataParallel(a.op)) row.push_back(cell);
      } catch (const InputError&) {
        readable = false;
      }
    });
    if (!readable) return WriteCsv(s, false);
    start = end + 1;
  }
  std::string out;
  for (int r = 0; r < s.ranks; ++r) {
    size_t next = 0;
    bool first = true;
    for (const Action& a : s.program[r]) {
      const bool kept = IsCompute(a.op) || IsDataParallel(a.op);
      if (kept && (r >= static_cast<int>(fixed.size()) || next >= fixed[r].size())) return WriteCsv(s, false);
      out += first ? "" : ",";
      out += kept ? std::string(fixed[r][next++]) : ToString(a);
      first = false;
    }
    if (r < static_cast<int>(fixed.size()) && next != fixed[r].size()) return WriteCsv(s, false);
    out += first ? ",\n" : "\n";
  }
  return out;
}

}  // namespace pipeproof
