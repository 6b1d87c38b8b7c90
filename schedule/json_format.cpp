// JSON schedules, for programs:
//   {"format": "pipeproof-schedule", "version": 1, "kind": "dualpipe",
//    "ranks": 4, "stages": 8, "microbatches": 8,
//    "placement": [0, 1, ...], "params": [0, 1, ...], "routes": [[0, 1, 2, 3], ...],
//    "program": [["0F0", "0SEND_F0", "WAIT", ...], ...]}
// placement, params, routes, kind and pass ("train" or "forward") may be left out (loop, identity,
// all stages, unknown, train).
// Errors inside a well-formed document are located by finding the offending value again.

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>

#include "schedule/formats.h"
#include "schedule/generate.h"
#include "schedule/json_text.h"

namespace pipeproof {
namespace {

using nlohmann::json;

class JsonReader {
 public:
  JsonReader(std::string_view text, std::string_view name) : text_(text), name_(name) {}

  [[noreturn]] void Fail(const std::vector<std::string>& path, const std::string& message) const {
    const TextPlace place = LocateJsonValue(text_, path);
    std::string where;
    for (const std::string& p : path) where += "/" + Printable(p);
    throw InputError::At(name_, place.line, place.col,
                         fmt::format("{}: {}", where.empty() ? "/" : where, message));
  }

  json Parse() {
    try {
      json j = json::parse(text_.begin(), text_.end());
      if (const std::optional<std::string> duplicate = FindDuplicateKey(text_)) {
        throw InputError::At(name_, 0, 0,
                             fmt::format("key {} appears twice in one object", Quote(*duplicate)));
      }
      return j;
    } catch (const json::out_of_range& e) {  // a number too large for any C++ type
      throw InputError::At(name_, 0, 0, "malformed JSON: a number too large to represent");
    } catch (const json::parse_error& e) {
      const TextPlace place = PlaceOfOffset(text_, e.byte > 0 ? e.byte - 1 : 0);
      throw InputError::At(name_, place.line, place.col, "malformed JSON: " + JsonParserMessage(e.what()));
    }
  }

  int64_t Int(const json& v, const std::vector<std::string>& path, int64_t lo, int64_t hi) const {
    if (!v.is_number_integer()) Fail(path, "expected an integer");
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi)) {
      Fail(path, fmt::format("{} is outside the allowed range {}..{}", v.dump(), lo, hi));
    }
    int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) Fail(path, fmt::format("{} is outside the allowed range {}..{}", x, lo, hi));
    return x;
  }

  std::vector<int> IntList(const json& v, const std::vector<std::string>& path, size_t max_count,
                           int64_t max_value) const {
    if (!v.is_array()) Fail(path, "expected a list of integers");
    if (v.size() > max_count) Fail(path, fmt::format("more than {} entries", max_count));
    std::vector<int> out;
    for (size_t i = 0; i < v.size(); ++i) {
      auto p = path;
      p.push_back(std::to_string(i));
      out.push_back(static_cast<int>(Int(v[i], p, 0, max_value)));
    }
    return out;
  }

  Schedule Read() {
    json doc = Parse();
    if (!doc.is_object()) Fail({}, "expected a JSON object with a schedule");
    for (auto it = doc.begin(); it != doc.end(); ++it) {
      static const char* kKeys[] = {"format", "version", "kind", "pass", "ranks", "stages", "microbatches",
                                    "placement", "params", "routes", "program"};
      if (std::find_if(std::begin(kKeys), std::end(kKeys),
                       [&](const char* k) { return it.key() == k; }) == std::end(kKeys)) {
        Fail({it.key()}, "unknown key");
      }
    }
    if (doc.contains("format") && doc["format"] != "pipeproof-schedule") {
      Fail({"format"}, "expected \"pipeproof-schedule\"");
    }
    if (doc.contains("version") && doc["version"] != 1) Fail({"version"}, "only version 1 is known");
    Schedule s;
    if (doc.contains("kind")) {
      if (!doc["kind"].is_string()) Fail({"kind"}, "expected a string");
      s.kind = doc["kind"].get<std::string>();
      auto kinds = GeneratorKinds();
      if (!s.kind.empty() && std::find(kinds.begin(), kinds.end(), s.kind) == kinds.end()) {
        Fail({"kind"}, fmt::format("unknown kind {} (known: {})", Quote(s.kind), fmt::join(kinds, ", ")));
      }
    }
    if (doc.contains("pass")) {
      if (doc["pass"] != "forward" && doc["pass"] != "train") {
        Fail({"pass"}, "expected \"train\" (forward and backward, the default) or \"forward\" (forward only)");
      }
      s.forward_only = doc["pass"] == "forward";
    }
    for (const char* key : {"ranks", "microbatches", "program"}) {
      if (!doc.contains(key)) Fail({}, fmt::format("the schedule has no \"{}\"", key));
    }
    s.ranks = static_cast<int>(Int(doc["ranks"], {"ranks"}, 1, kMaxRanks));
    s.microbatches = static_cast<int>(Int(doc["microbatches"], {"microbatches"}, 1, kMaxMicrobatches));
    s.stages = doc.contains("stages") ? static_cast<int>(Int(doc["stages"], {"stages"}, 1, kMaxStages))
                                      : s.ranks;
    try {
      CheckLimits(s.ranks, s.stages, s.microbatches);
    } catch (const InputError& e) {
      Fail({"stages"}, e.message());
    }
    if (doc.contains("placement")) {
      s.placement = IntList(doc["placement"], {"placement"}, s.stages, s.ranks - 1);
      if (static_cast<int>(s.placement.size()) != s.stages) {
        Fail({"placement"}, fmt::format("lists {} ranks for {} stages", s.placement.size(), s.stages));
      }
    }
    if (doc.contains("params")) {
      s.params = IntList(doc["params"], {"params"}, s.stages, s.stages - 1);
      if (static_cast<int>(s.params.size()) != s.stages) {
        Fail({"params"}, fmt::format("lists {} blocks for {} stages", s.params.size(), s.stages));
      }
    }
    if (doc.contains("routes")) {
      const json& routes = doc["routes"];
      if (!routes.is_array() || static_cast<int>(routes.size()) != s.microbatches) {
        Fail({"routes"}, fmt::format("expected one route (a list of stages) per microbatch, {} in all",
                                     s.microbatches));
      }
      for (int m = 0; m < s.microbatches; ++m) {
        s.routes.push_back(IntList(routes[m], {"routes", std::to_string(m)}, s.stages, s.stages - 1));
      }
    }
    const json& program = doc["program"];
    if (!program.is_array() || static_cast<int>(program.size()) != s.ranks) {
      Fail({"program"}, fmt::format("expected one list of actions per rank, {} in all", s.ranks));
    }
    try {
      CompleteTopology(s);
    } catch (const InputError& e) {
      Fail({}, e.message());
    }
    int64_t total = 0;
    for (int r = 0; r < s.ranks; ++r) {
      const std::vector<std::string> rank_path{"program", std::to_string(r)};
      if (!program[r].is_array()) Fail(rank_path, "expected a list of actions");
      for (size_t i = 0; i < program[r].size(); ++i) {
        auto path = rank_path;
        path.push_back(std::to_string(i));
        const json& a = program[r][i];
        if (!a.is_string()) Fail(path, "expected an action string such as \"0F0\"");
        if (++total > kMaxActions) Fail(path, fmt::format("more than {} actions", kMaxActions));
        try {
          s.program[r].push_back(ParseAction(a.get_ref<const std::string&>()));
        } catch (const InputError& e) {
          Fail(path, e.message());
        }
      }
    }
    return s;
  }

 private:
  std::string_view text_;
  std::string_view name_;
};

}  // namespace

Schedule ParseJson(std::string_view text, std::string_view name) {
  return JsonReader(text, name).Read();
}

std::string WriteJson(const Schedule& s) {
  json doc;
  doc["format"] = "pipeproof-schedule";
  doc["version"] = 1;
  if (!s.kind.empty()) doc["kind"] = s.kind;
  if (s.forward_only) doc["pass"] = "forward";
  doc["ranks"] = s.ranks;
  doc["stages"] = s.stages;
  doc["microbatches"] = s.microbatches;
  doc["placement"] = s.placement;
  doc["params"] = s.params;
  doc["routes"] = s.routes;
  json program = json::array();
  for (const auto& actions : s.program) {
    json row = json::array();
    for (const Action& a : actions) row.push_back(ToString(a));
    program.push_back(std::move(row));
  }
  doc["program"] = std::move(program);
  // One line per key, the long lists kept on one line each, so diffs stay readable.
  std::string out = "{\n";
  bool first = true;
  for (const char* key : {"format", "version", "kind", "pass", "ranks", "stages", "microbatches",
                          "placement", "params", "routes"}) {
    if (!doc.contains(key)) continue;
    out += fmt::format("{}  \"{}\": {}", first ? "" : ",\n", key, doc[key].dump());
    first = false;
  }
  out += ",\n  \"program\": [\n";
  for (size_t r = 0; r < doc["program"].size(); ++r) {
    out += fmt::format("    {}{}\n", doc["program"][r].dump(), r + 1 < doc["program"].size() ? "," : "");
  }
  out += "  ]\n}\n";
  return out;
}

}  // namespace pipeproof
