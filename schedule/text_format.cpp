// pipeproof's text format (.pps):
//
//   # comment
//   kind dualpipe              (optional: the generator, which sets the memory bound)
//   pass forward               (optional: a forward-only pass; default "train")
//   ranks 4
//   stages 8                   (default: ranks)
//   microbatches 8
//   placement 0 1 2 3 3 2 1 0  (or "loop" (default), or "v")
//   params 0 1 2 3 3 2 1 0     (or "identity" (default))
//   route 0-3: 0-3             (microbatches: stages in order; default all stages 0..S-1)
//   route 4-7: 4-7
//   rank 0: 0F0 0SEND_F0 WAIT ...
//
// Header lines come before the first rank line; every rank has exactly one rank line. A file
// of bare rank lines (the form the DualPipe reference's recorded orders take) has its topology
// taken from TopologyOptions or inferred, as for PyTorch's CSV.

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <optional>
#include <span>
#include <utility>

#include "schedule/action_rows.h"
#include "schedule/formats.h"
#include "schedule/generate.h"
#include "schedule/text_scan.h"

namespace pipeproof {
namespace {

// Reads "a" and "a-b" items (ascending ranges) of values in 0..max_value, at most max_count.
void ReadIndexList(LineScanner& line, std::vector<int>& out, int max_count, int max_value,
                   std::string_view what) {
  while (auto word = line.NextWord()) {
    std::string_view w = word->text;
    size_t dash = w.find('-', 1);
    int64_t lo = line.Number(*word, w.substr(0, dash), what, max_value);
    int64_t hi = lo;
    if (dash != std::string_view::npos) {
      hi = line.Number(*word, w.substr(dash + 1), what, max_value);
      if (hi < lo) line.Fail(*word, fmt::format("range {} runs backwards", Quote(w)));
    }
    if (static_cast<int64_t>(out.size()) + (hi - lo + 1) > max_count) {
      line.Fail(*word, fmt::format("more than {} {}", max_count, what));
    }
    for (int64_t v = lo; v <= hi; ++v) out.push_back(static_cast<int>(v));
  }
}

// An upper bound on the words in `text` (where single spaces part them), counted faster than
// they are parsed: a rank line's program reserved at once is written once, where grown by doubling
// it is copied and its pages are touched about twice.
size_t WordsAtMost(std::string_view text) { return text.empty() ? 0 : 1 + CountOf(text, ' '); }

// A rank line whose actions are still to be read. They are read once the header is complete,
// the lines of a large file on two cores at once.
struct RankLine {
  int rank;
  LineScanner actions;  // past "rank r:"
};

// Reads the actions of `lines` into s.program in file order; throws at the first bad action, or
// at the first past kMaxActions, counting on from `total`.
void ReadActions(std::span<RankLine> lines, Schedule& s, int64_t& total) {
  for (const RankLine& line : lines) {
    // Read into copies on this thread's stack: the rows' and scanners' own fields lie side by
    // side, and writing them from two threads would make the cores fight over cache lines.
    LineScanner scanner = line.actions;
    std::vector<Action> program = std::move(s.program[line.rank]);
    program.clear();  // read before, where a second half is read again
    while (auto word = scanner.NextWord()) {
      if (++total > kMaxActions) scanner.Fail(*word, fmt::format("more than {} actions", kMaxActions));
      program.push_back(scanner.ParseActionAt(*word, {}));
    }
    s.program[line.rank] = std::move(program);
  }
}

struct Header {
  Schedule schedule;
  std::optional<int> stages;
  std::map<std::string, int> seen;  // key -> line
  std::optional<std::pair<LineScanner, std::string>> placement, params;  // deferred to sizes
  std::vector<std::pair<LineScanner, std::string>> routes;
};

}  // namespace

bool IsPpsLineKey(std::string_view word) {
  static constexpr std::string_view kKeys[] = {"kind",      "pass",   "ranks", "stages", "microbatches",
                                               "placement", "params", "route", "rank"};
  return std::find(std::begin(kKeys), std::end(kKeys), word) != std::end(kKeys);
}

Schedule ParsePps(std::string_view text, std::string_view name, const TopologyOptions& topo) {
  Header h;
  Schedule& s = h.schedule;
  std::vector<int> rank_line;  // rank -> line of its "rank r:" line, 0 = none yet
  bool topology_done = false;
  bool bare = false;  // no header: rank lines only
  ActionRows bare_rows;

  auto finish_header = [&](const LineScanner& at) {
    if (bare || topology_done) return;
    topology_done = true;
    if (!h.seen.count("ranks")) at.Fail(at.Start(), "the header has no 'ranks' line");
    if (!h.seen.count("microbatches")) at.Fail(at.Start(), "the header has no 'microbatches' line");
    s.stages = h.stages.value_or(s.ranks);
    try {
      CheckLimits(s.ranks, s.stages, s.microbatches);
    } catch (const InputError& e) {
      at.Fail(at.Start(), e.message());
    }
    if (h.placement) {
      auto& [line, value] = *h.placement;
      if (value == "loop" || value == "v") {
        try {
          s.placement = ParsePlacement(value, s.ranks, s.stages);
        } catch (const InputError& e) {
          line.Fail(line.Start(), e.message());
        }
      } else {
        ReadIndexList(line, s.placement, s.stages, s.ranks - 1, "placement ranks");
        if (static_cast<int>(s.placement.size()) != s.stages) {
          line.Fail(line.Start(), fmt::format("placement lists {} ranks for {} stages",
                                              s.placement.size(), s.stages));
        }
      }
    }
    if (h.params && h.params->second != "identity") {
      LineScanner& line = h.params->first;
      ReadIndexList(line, s.params, s.stages, s.stages - 1, "parameter blocks");
      if (static_cast<int>(s.params.size()) != s.stages) {
        line.Fail(line.Start(), fmt::format("params lists {} blocks for {} stages",
                                            s.params.size(), s.stages));
      }
    }
    if (!h.routes.empty()) {
      s.routes.assign(s.microbatches, {});
      for (auto& [line, value] : h.routes) {
        std::vector<int> microbatches, stages;
        LineScanner mbs = line.Split(':');
        ReadIndexList(mbs, microbatches, s.microbatches, s.microbatches - 1, "microbatches");
        ReadIndexList(line, stages, s.stages, s.stages - 1, "stages");
        if (stages.empty()) line.Fail(line.Start(), "a route needs at least one stage");
        for (int m : microbatches) {
          if (!s.routes[m].empty()) {
            line.Fail(line.Start(), fmt::format("microbatch {} has two routes", m));
          }
          s.routes[m] = stages;
        }
      }
      for (int m = 0; m < s.microbatches; ++m) {
        if (s.routes[m].empty()) {
          h.routes.back().first.Fail(h.routes.back().first.Start(),
                                     fmt::format("microbatch {} has no route (route lines must "
                                                 "cover every microbatch when there are any)",
                                                 m));
        }
      }
    }
    try {
      CompleteTopology(s);
    } catch (const InputError& e) {
      at.Fail(at.Start(), e.message());
    }
    rank_line.assign(s.ranks, 0);
  };

  TextLines lines(text, name);
  int64_t total_actions = 0;  // of a file without header: its rank lines are read as they come
  std::vector<RankLine> rank_lines;
  LineScanner last = lines.EndOfInput();
  try {
    while (auto next = lines.Next()) {
      LineScanner& line = *next;
      last = line;
      auto key = line.NextWord();
      if (!key) continue;  // blank or comment
      std::string_view k = key->text;
      if (k == "rank") {
        if (!topology_done && h.seen.empty()) bare = topology_done = true;
        finish_header(line);
        auto word = line.NextWordUntil(':');
        if (!word) line.Fail(line.Start(), "expected 'rank N:'");
        int r = static_cast<int>(
            line.Number(*word, word->text, "rank", bare ? kMaxRanks - 1 : s.ranks - 1));
        if (!line.Consume(':')) line.Fail(*word, fmt::format("expected ':' after 'rank {}'", r));
        if (bare && static_cast<int>(rank_line.size()) <= r) {
          rank_line.resize(r + 1);
          bare_rows.resize(r + 1);
        }
        if (rank_line[r]) {
          line.Fail(*word, fmt::format("rank {} already has its line (line {})", r, rank_line[r]));
        }
        rank_line[r] = line.number();
        if (!bare) {
          s.program[r].reserve(WordsAtMost(line.Rest()));
          rank_lines.push_back({r, line});
          continue;
        }
        while (auto action = line.NextWord()) {
          if (++total_actions > kMaxActions) {
            line.Fail(*action, fmt::format("more than {} actions", kMaxActions));
          }
          bare_rows[r].push_back({line.ParseActionAt(*action, {}), line.number(), action->col});
        }
        continue;
      }
      if (topology_done) line.Fail(*key, fmt::format("header line {} after the first rank line", Quote(k)));
      if (h.seen.count(std::string(k)) && k != "route") {
        line.Fail(*key, fmt::format("{} is given twice (first on line {})", Quote(k),
                                    h.seen[std::string(k)]));
      }
      h.seen[std::string(k)] = line.number();
      if (k == "kind") {
        auto v = line.NextWord();
        if (!v) line.Fail(*key, "'kind' needs a value");
        s.kind = std::string(v->text);
        auto kinds = GeneratorKinds();
        if (std::find(kinds.begin(), kinds.end(), s.kind) == kinds.end()) {
          line.Fail(*v, fmt::format("unknown kind {} (known: {})", Quote(v->text),
                                    fmt::join(kinds, ", ")));
        }
        line.ExpectEnd();
      } else if (k == "pass") {
        auto v = line.NextWord();
        if (!v || (v->text != "forward" && v->text != "train")) {
          line.Fail(v ? *v : *key, "'pass' is 'train' (forward and backward, the default) or 'forward' (forward only)");
        }
        s.forward_only = v->text == "forward";
        line.ExpectEnd();
      } else if (k == "ranks") {
        s.ranks = static_cast<int>(line.NumberWord("ranks", 1, kMaxRanks));
        line.ExpectEnd();
      } else if (k == "stages") {
        h.stages = static_cast<int>(line.NumberWord("stages", 1, kMaxStages));
        line.ExpectEnd();
      } else if (k == "microbatches") {
        s.microbatches = static_cast<int>(line.NumberWord("microbatches", 1, kMaxMicrobatches));
        line.ExpectEnd();
      } else if (k == "placement") {
        h.placement.emplace(line, std::string(line.Rest()));
      } else if (k == "params") {
        h.params.emplace(line, std::string(line.Rest()));
      } else if (k == "route") {
        h.routes.emplace_back(line, std::string(line.Rest()));
      } else {
        line.Fail(*key, fmt::format("unknown header key {} (expected kind, pass, ranks, stages, "
                                    "microbatches, placement, params, route or rank)",
                                    Quote(k)));
      }
    }
  } catch (const InputError&) {
    // A bad action on an earlier rank line comes first.
    int64_t total = 0;
    ReadActions(rank_lines, s, total);
    throw;
  }
  ReadLinesSideBySide(
      std::span(rank_lines), [](const RankLine& line) { return line.actions.Raw().size(); },
      [&](std::span<RankLine> lines, int64_t& total) { ReadActions(lines, s, total); });
  if (!topology_done) {
    if (h.seen.empty()) last.Fail(last.Start(), "no schedule here: the file is empty");
    finish_header(last);
  }
  for (int r = 0; r < static_cast<int>(rank_line.size()); ++r) {
    if (!rank_line[r]) last.Fail(last.Start(), fmt::format("rank {} has no 'rank {}:' line", r, r));
  }
  if (bare) return FromActionRows(bare_rows, name, topo);
  return std::move(h.schedule);  // `s` names a member: returning it would copy millions of actions
}

namespace {

std::string JoinInts(const std::vector<int>& v) { return fmt::format("{}", fmt::join(v, " ")); }

// "0-3" for a run of consecutive ascending stages, else the list.
std::string CompactList(const std::vector<int>& v) {
  bool consecutive = v.size() > 2;
  for (size_t i = 1; i < v.size() && consecutive; ++i) consecutive = v[i] == v[i - 1] + 1;
  return consecutive ? fmt::format("{}-{}", v.front(), v.back()) : JoinInts(v);
}

}  // namespace

std::string WritePps(const Schedule& s) {
  std::string out = "# pipeproof schedule\n";
  if (!s.kind.empty()) out += fmt::format("kind {}\n", s.kind);
  if (s.forward_only) out += "pass forward\n";
  out += fmt::format("ranks {}\nstages {}\nmicrobatches {}\n", s.ranks, s.stages, s.microbatches);
  if (s.placement == LoopPlacement(s.ranks, s.stages)) {
    out += "placement loop\n";
  } else if (s.stages == 2 * s.ranks && s.placement == VPlacement(s.ranks, s.stages)) {
    out += "placement v\n";
  } else {
    out += fmt::format("placement {}\n", JoinInts(s.placement));
  }
  std::vector<int> identity(s.stages);
  for (int i = 0; i < s.stages; ++i) identity[i] = i;
  if (s.params != identity) out += fmt::format("params {}\n", JoinInts(s.params));
  bool default_routes = true;
  for (const auto& route : s.routes) default_routes = default_routes && route == identity;
  if (!default_routes) {
    for (int m = 0; m < s.microbatches;) {
      int end = m;
      while (end + 1 < s.microbatches && s.routes[end + 1] == s.routes[m]) ++end;
      std::string mbs = end == m ? fmt::format("{}", m) : fmt::format("{}-{}", m, end);
      out += fmt::format("route {}: {}\n", mbs, CompactList(s.routes[m]));
      m = end + 1;
    }
  }
  for (int r = 0; r < s.ranks; ++r) {
    out += fmt::format("rank {}:", r);
    for (const Action& a : s.program[r]) {
      out += ' ';
      out += ToString(a);
    }
    out += '\n';
  }
  return out;
}

namespace {
// The rank a .pps line gives actions to ("rank 3: ..."), and where its actions start.
std::optional<std::pair<int, size_t>> RankLineStart(std::string_view line) {
  size_t at = line.find_first_not_of(" \t");
  if (at == std::string_view::npos || line.substr(at, 4) != "rank") return std::nullopt;
  at = line.find_first_not_of(" \t", at + 4);
  int rank = 0;
  const char* end = line.data() + line.size();
  auto [next, ec] = std::from_chars(line.data() + (at == std::string_view::npos ? line.size() : at), end, rank);
  if (ec != std::errc()) return std::nullopt;
  size_t colon = line.find_first_not_of(" \t", static_cast<size_t>(next - line.data()));
  if (colon == std::string_view::npos || line[colon] != ':') return std::nullopt;
  return std::pair{rank, colon + 1};
}
}  // namespace

std::string RewritePps(std::string_view original, const Schedule& schedule) {
  std::string out;
  std::vector<bool> written(schedule.program.size(), false);
  for (size_t start = 0; start < original.size();) {
    size_t end = original.find('\n', start);
    const size_t next = end == std::string_view::npos ? original.size() : end + 1;
    if (end == std::string_view::npos) end = original.size();
    std::string_view line = original.substr(start, end - start);
    const bool crlf = line.ends_with('\r');  // kept as the file has it
    if (crlf) line.remove_suffix(1);
    const auto rank = RankLineStart(line);
    if (rank && rank->first >= 0 && rank->first < static_cast<int>(schedule.program.size())) {
      const size_t comment = line.find('#');
      out += line.substr(0, rank->second);
      for (const Action& a : schedule.program[rank->first]) out += " " + ToString(a);
      if (comment != std::string_view::npos) out += fmt::format("  {}", line.substr(comment));
      out += crlf ? "\r\n" : "\n";
      written[rank->first] = true;
    } else {
      out += original.substr(start, next - start);
      if (next == original.size() && end == original.size() && !line.empty()) out += '\n';
    }
    start = next;
  }
  if (std::find(written.begin(), written.end(), false) != written.end()) {
    return WritePps(schedule);  // not a file of one rank line per rank: written anew
  }
  return out;
}

}  // namespace pipeproof
