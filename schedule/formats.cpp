#include "schedule/formats.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <iostream>
#include <map>
#include <sstream>

#include "schedule/read_file.h"

namespace pipeproof {

namespace {
constexpr int64_t kMaxFileBytes = int64_t{1} << 30;

std::string_view Extension(std::string_view name) {
  size_t dot = name.rfind('.');
  size_t slash = name.rfind('/');
  if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash)) return {};
  return name.substr(dot + 1);
}
}  // namespace

std::optional<Format> FormatFromName(std::string_view name) {
  if (name == "pps" || name == "text") return Format::kPps;
  if (name == "csv") return Format::kCsv;
  if (name == "csv-compute") return Format::kCsvCompute;
  if (name == "json") return Format::kJson;
  return std::nullopt;
}

std::string_view FormatName(Format format) {
  switch (format) {
    case Format::kPps: return "pps";
    case Format::kCsv: return "csv";
    case Format::kCsvCompute: return "csv-compute";
    case Format::kJson: return "json";
  }
  return "?";
}

namespace {

// A UTF-8 byte order mark (Windows editors write one) is not part of any format.
std::string_view WithoutByteOrderMark(std::string_view text) {
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  return text;
}

}  // namespace

std::string ScheduleName(const std::string& path) { return path == "-" ? "<stdin>" : path; }

std::optional<Format> FormatOfExtension(std::string_view name) {
  const std::string_view ext = Extension(name);
  if (ext == "pps") return Format::kPps;
  if (ext == "csv") return Format::kCsv;
  if (ext == "json") return Format::kJson;
  return std::nullopt;  // any other name (.txt, none) is read by its content
}

Format DetectFormat(std::string_view name, std::string_view text) {
  if (std::optional<Format> by_name = FormatOfExtension(name)) return *by_name;
  text = WithoutByteOrderMark(text);
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && (text[first] == '{' || text[first] == '[')) {
    return Format::kJson;
  }
  // A .pps file starts (after comments) with a header key or a rank line; a CSV with an action.
  std::istringstream lines{std::string(text.substr(0, 4096))};
  for (std::string line; std::getline(lines, line);) {
    size_t start = line.find_first_not_of(" \t\r");
    if (start == std::string::npos || line[start] == '#') continue;
    std::string_view word = std::string_view(line).substr(start);
    word = word.substr(0, word.find_first_of(" \t:"));
    return IsPpsLineKey(word) ? Format::kPps : Format::kCsv;
  }
  return Format::kPps;
}

Schedule ParseSchedule(std::string_view text, std::string_view name, const ReadOptions& options) {
  text = WithoutByteOrderMark(text);
  switch (options.format.value_or(DetectFormat(name, text))) {
    case Format::kPps: return ParsePps(text, name, options.topology);
    case Format::kCsv:
    case Format::kCsvCompute: return ParseCsv(text, name, options.topology);
    case Format::kJson: return ParseJson(text, name);
  }
  throw InputError("unknown format");
}

std::string ReadScheduleText(const std::string& path) {
  std::string text;
  if (path == "-") {  // a pipe has no size to check first: read it in chunks, up to the limit
    char chunk[1 << 16];
    while (std::cin.read(chunk, sizeof chunk) || std::cin.gcount() > 0) {
      text.append(chunk, static_cast<size_t>(std::cin.gcount()));
      if (static_cast<int64_t>(text.size()) > kMaxFileBytes) {
        throw InputError::At("<stdin>", 0, 0,
                             fmt::format("more than the limit of {} bytes for a schedule",
                                         kMaxFileBytes));
      }
    }
  } else {
    text = ReadFileBounded(path, kMaxFileBytes, "schedule");
  }
  return text;
}

Schedule ReadScheduleFile(const std::string& path, const ReadOptions& options) {
  return ParseSchedule(ReadScheduleText(path), ScheduleName(path), options);
}

std::string WriteSchedule(const Schedule& schedule, Format format) {
  switch (format) {
    case Format::kPps: return WritePps(schedule);
    case Format::kCsv: return WriteCsv(schedule, false);
    case Format::kCsvCompute: return WriteCsv(schedule, true);
    case Format::kJson: return WriteJson(schedule);
  }
  return {};
}

std::string RewriteSchedule(std::string_view original, Format format, const Schedule& schedule) {
  switch (format) {
    case Format::kPps: return RewritePps(original, schedule);
    case Format::kCsv:
    case Format::kCsvCompute: return RewriteCsv(original, schedule);  // computes kept, comms written
    case Format::kJson: return WriteJson(schedule);
  }
  return {};
}

std::vector<int> ParsePlacement(std::string_view text, int ranks, int stages) {
  if (text == "loop") return LoopPlacement(ranks, stages);
  if (text == "v") {
    if (stages != 2 * ranks) {
      throw InputError(fmt::format("the v placement needs twice as many stages as ranks ({} "
                                   "stages for {} ranks)",
                                   stages, ranks));
    }
    return VPlacement(ranks, stages);
  }
  std::vector<int> placement;
  std::string item;
  auto flush = [&] {
    if (item.empty()) return;
    int value = -1;
    auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    if (ec != std::errc() || ptr != item.data() + item.size() || value < 0 || value >= ranks) {
      throw InputError(fmt::format("placement entry {} is not a rank in 0..{}", Quote(item),
                                   ranks - 1));
    }
    placement.push_back(value);
    item.clear();
  };
  for (char c : text) {
    if (c == ',' || c == ' ' || c == '\t') {
      flush();
    } else {
      item += c;
    }
  }
  flush();
  if (static_cast<int>(placement.size()) != stages) {
    throw InputError(fmt::format("placement lists {} ranks for {} stages (expected loop, v or "
                                 "one rank per stage)",
                                 placement.size(), stages));
  }
  return placement;
}

std::string FormatGrid(const Schedule& s) {
  size_t steps = 0;
  for (const auto& actions : s.program) steps = std::max(steps, actions.size());
  const int label_width = static_cast<int>(std::to_string(steps == 0 ? 0 : steps - 1).size());
  std::vector<size_t> width(s.ranks);
  for (int r = 0; r < s.ranks; ++r) {
    width[r] = fmt::format("Rank {}", r).size();
    for (const Action& a : s.program[r]) width[r] = std::max(width[r], ToString(a).size());
  }
  std::string out(5 + label_width + 2, ' ');
  for (int r = 0; r < s.ranks; ++r) {
    out += fmt::format("{:<{}}", fmt::format("Rank {}", r), width[r]);
    if (r + 1 < s.ranks) out += ' ';
  }
  out += '\n';
  for (size_t i = 0; i < steps; ++i) {
    std::string row = fmt::format("Step {:0{}}: ", i, label_width);
    for (int r = 0; r < s.ranks; ++r) {
      std::string cell = i < s.program[r].size() ? ToString(s.program[r][i]) : "";
      row += fmt::format("{:<{}}", cell, width[r]);
      if (r + 1 < s.ranks) row += ' ';
    }
    while (!row.empty() && row.back() == ' ') row.pop_back();
    out += row + '\n';
  }
  return out;
}

namespace {
// "0-3, 7, 9-12": runs of consecutive integers as ranges.
std::string Ranges(const std::vector<int>& sorted) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    while (j + 1 < sorted.size() && sorted[j + 1] == sorted[j] + 1) ++j;
    parts.push_back(j >= i + 2 ? fmt::format("{}-{}", sorted[i], sorted[j])
                               : fmt::format("{}", sorted[i]));
    if (j == i + 1) parts.push_back(fmt::format("{}", sorted[j]));
    i = j + 1;
  }
  return fmt::format("{}", fmt::join(parts, ", "));
}
}  // namespace

std::string DescribeTopology(const Schedule& s) {
  std::string out = fmt::format("{}{} ranks, {} stages, {} microbatches, {} actions\n",
                                s.kind.empty() ? "" : s.kind + ": ", s.ranks, s.stages,
                                s.microbatches, s.ActionCount());
  for (int r = 0; r < s.ranks; ++r) {
    std::vector<int> own;
    std::vector<std::string> shared;
    for (int st = 0; st < s.stages; ++st) {
      if (s.placement[st] != r) continue;
      if (s.params[st] == st) {
        own.push_back(st);
      } else {
        shared.push_back(fmt::format("{} (params of {})", st, s.params[st]));
      }
    }
    std::string held = Ranges(own);
    if (!shared.empty()) held += fmt::format("{}{}", held.empty() ? "" : ", ", fmt::join(shared, ", "));
    out += fmt::format("  rank {}: stages {}\n", r, held.empty() ? "none" : held);
  }
  std::map<std::vector<int>, std::vector<int>> by_route;
  for (int m = 0; m < s.microbatches; ++m) by_route[s.routes[m]].push_back(m);
  if (by_route.size() > 1) {
    for (const auto& [route, mbs] : by_route) {
      out += fmt::format("  microbatches {}: stages {}\n", Ranges(mbs), fmt::join(route, " "));
    }
  }
  return out;
}

}  // namespace pipeproof
