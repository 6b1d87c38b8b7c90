// PyTorch's CSV schedules: one row per rank, no header, one action per cell, empty cell = idle.
// Idle cells only align the rows in time; they are not kept.

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <optional>
#include <span>

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
  auto has = [&](Op op) {
    return std::any_of(row.begin(), row.end(), [&](const LocatedAction& c) { return c.action.op == op; });
  };
  if (!has(Op::kBackward) || !has(Op::kWeightGrad)) return;  // most rows: no map at all
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

// A line of the file and the row of actions read from it. The lines are split first and read
// afterwards, those of a large file on two cores at once.
struct CsvLine {
  LineScanner line;
  std::vector<LocatedAction> row;
};

// Reads the cells of `lines` in order; throws at the first bad one, or at the first past
// kMaxActions, counting on from `total`.
void ReadRows(std::span<CsvLine> lines, bool legacy_bw, int64_t& total) {
  for (CsvLine& csv : lines) {
    const LineScanner& line = csv.line;
    std::vector<LocatedAction> row = std::move(csv.row);  // on this thread's stack, as ReadActions
    row.clear();  // read before, where a second half is read again
    const std::string_view text = line.Raw();  // CSV has no comments: a '#' is a bad cell
    ForEachCell(text, [&](std::string_view cell) {
      Word where{cell, 1 + static_cast<int>(cell.data() - text.data())};
      if (++total > kMaxActions) line.Fail(where, fmt::format("more than {} actions", kMaxActions));
      row.push_back({line.ParseActionAt(where, {.legacy_bw = legacy_bw}), line.number(), where.col});
    });
    ResolveLegacyBackward(row, line, legacy_bw);
    csv.row = std::move(row);
  }
}

}  // namespace

Schedule ParseCsv(std::string_view text, std::string_view name, const TopologyOptions& topo) {
  std::vector<CsvLine> lines;
  int last_nonempty = 0;
  TextLines scan(text, name);
  try {
    while (auto next = scan.Next()) {
      if (lines.size() >= static_cast<size_t>(kMaxRanks)) {
        next->Fail(next->Start(), fmt::format("more than {} rows (one row per rank)", kMaxRanks));
      }
      const std::string_view raw = next->Raw();
      if (raw.find_first_not_of(" \t\r") != std::string_view::npos) last_nonempty = next->number();
      // Room for every cell an action could fill ("0F0," takes four bytes), reserved here so that
      // the rows come from the main thread's memory; the idle cells of a compute-only order leave
      // most of it untouched, and so unmapped.
      CsvLine& csv = lines.emplace_back(CsvLine{*next, {}});
      csv.row.reserve(std::min(1 + CountOf(raw, ','), raw.size() / 4 + 1));
    }
  } catch (const InputError&) {
    int64_t total = 0;
    ReadRows(lines, topo.legacy_bw, total);  // a bad cell on an earlier line comes first
    throw;
  }
  ReadLinesSideBySide(
      std::span(lines), [](const CsvLine& csv) { return csv.line.Raw().size(); },
      [&](std::span<CsvLine> part, int64_t& total) { ReadRows(part, topo.legacy_bw, total); });
  ActionRows rows;
  rows.reserve(last_nonempty);
  // Trailing blank lines are not ranks.
  for (int k = 0; k < last_nonempty; ++k) rows.push_back(std::move(lines[k].row));
  return FromActionRows(rows, name, topo);
}

namespace {

// Each rank's row: a cell for each action spell(rank, action) spells (nullopt: no cell). A rank
// with nothing to do is one idle slot: a blank line at the end would be no rank.
template <typename Spell>
std::string WriteRows(const Schedule& s, const Spell& spell) {
  std::string out;
  for (int r = 0; r < s.ranks; ++r) {
    bool first = true;
    for (const Action& a : s.program[r]) {
      const std::optional<std::string> cell = spell(r, a);
      if (!cell) continue;
      if (!first) out += ',';
      out += *cell;
      first = false;
    }
    out += first ? ",\n" : "\n";
  }
  return out;
}

bool ComputeOrDataParallel(const Action& a) { return IsCompute(a.op) || IsDataParallel(a.op); }

}  // namespace

std::string WriteCsv(const Schedule& s, bool compute_only) {
  if (s.forward_only) {
    // Read back, it would be a training schedule missing every backward.
    throw InputError("a forward-only schedule cannot be written as PyTorch's CSV, which has no way "
                     "to say so: write .pps or .json");
  }
  return WriteRows(s, [&](int, const Action& a) -> std::optional<std::string> {
    // PyTorch's compute-only orders keep the data-parallel actions (REDUCE_GRAD since 2.15).
    if (compute_only && !ComputeOrDataParallel(a)) return std::nullopt;
    return ToString(a);
  });
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
        if (ComputeOrDataParallel(ParseAction(cell, {.legacy_bw = true}))) row.push_back(cell);
      } catch (const InputError&) {
        readable = false;
      }
    });
    if (!readable) return WriteCsv(s, false);
    start = end + 1;
  }
  // The schedule's computes must be the file's, row by row; else it is written anew.
  for (int r = 0; r < s.ranks; ++r) {
    const size_t kept = std::count_if(s.program[r].begin(), s.program[r].end(), ComputeOrDataParallel);
    if (kept != (r < static_cast<int>(fixed.size()) ? fixed[r].size() : 0)) return WriteCsv(s, false);
  }
  std::vector<size_t> next(s.ranks, 0);
  return WriteRows(s, [&](int r, const Action& a) -> std::optional<std::string> {
    return ComputeOrDataParallel(a) ? std::string(fixed[r][next[r]++]) : ToString(a);
  });
}

}  // namespace pipeproof
