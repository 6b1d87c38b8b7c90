#include "exec/fault_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "schedule/errors.h"  // InputError, kMaxRanks
#include "schedule/json_text.h"
#include "schedule/read_file.h"

namespace pipeproof {

using JsonValue = nlohmann::json;

std::string_view CorruptKindName(CorruptKind kind) {
  switch (kind) {
    case CorruptKind::kBitflip: return "bitflip";
    case CorruptKind::kSwap: return "swap";
    case CorruptKind::kDrop: return "drop";
  }
  return "?";
}

std::optional<CorruptKind> CorruptKindFromName(std::string_view name) {
  for (CorruptKind k : {CorruptKind::kBitflip, CorruptKind::kSwap, CorruptKind::kDrop}) {
    if (CorruptKindName(k) == name) return k;
  }
  return std::nullopt;
}

const RankFaults& FaultPlan::Rank(int rank) const {
  static const RankFaults kNone;
  return rank >= 0 && rank < static_cast<int>(ranks.size()) ? ranks[rank] : kNone;
}

bool FaultPlan::Empty() const {
  if (poison || corrupt || kill) return false;
  for (const RankFaults& r : ranks) {
    auto any = [](const std::vector<uint32_t>& v) {
      return std::any_of(v.begin(), v.end(), [](uint32_t d) { return d != 0; });
    };
    if (any(r.post_delay_us) || any(r.deliver_delay_us) || any(r.compute_delay_us) ||
        !r.unit_orders.empty() || r.straggler != 1) {
      return false;
    }
  }
  return true;
}

namespace {

std::string Duration(double us) {
  if (us >= 1e6) return fmt::format("{:.3g}s", us / 1e6);
  if (us >= 1e3) return fmt::format("{:.3g}ms", us / 1e3);
  return fmt::format("{:.3g}us", us);
}

struct DelayStats {
  int64_t sites = 0, delayed = 0;
  double sum = 0, max = 0;
  void Add(const std::vector<uint32_t>& v) {
    sites += static_cast<int64_t>(v.size());
    for (uint32_t d : v) {
      if (d == 0) continue;
      ++delayed;
      sum += d;
      max = std::max<double>(max, d);
    }
  }
  std::string Line(std::string_view what) const {
    return fmt::format("delays {}: {} sites, mean {}, max {}", what, delayed,
                       Duration(sum / static_cast<double>(delayed)), Duration(max));
  }
};

}  // namespace

std::string FaultPlan::Summary() const {
  std::vector<std::string> lines;
  DelayStats post, deliver, compute;
  int64_t shuffled = 0;
  std::vector<std::string> stragglers;
  for (size_t r = 0; r < ranks.size(); ++r) {
    post.Add(ranks[r].post_delay_us);
    deliver.Add(ranks[r].deliver_delay_us);
    compute.Add(ranks[r].compute_delay_us);
    shuffled += static_cast<int64_t>(ranks[r].unit_orders.size());
    if (ranks[r].straggler != 1) stragglers.push_back(fmt::format("rank {} x{:g}", r, ranks[r].straggler));
  }
  if (post.delayed) lines.push_back(post.Line("before posting"));
  if (deliver.delayed) lines.push_back(deliver.Line("before delivery"));
  if (compute.delayed) lines.push_back(compute.Line("before compute"));
  if (!stragglers.empty()) lines.push_back(fmt::format("stragglers: {}", fmt::join(stragglers, ", ")));
  if (shuffled) lines.push_back(fmt::format("shuffled posting order in {} units", shuffled));
  if (poison) lines.push_back("NaN-poisoning of every freed buffer");
  if (HasNegativeControl()) lines.push_back("negative control: " + DescribeNegativeControl());
  if (lines.empty()) return "no faults\n";
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

std::string FaultPlan::DescribeNegativeControl() const {
  std::vector<std::string> parts;
  if (corrupt) {
    const MessageId& m = corrupt->message;
    switch (corrupt->kind) {
      case CorruptKind::kBitflip:
        parts.push_back(fmt::format("bitflip of bit {} of element {} in message #{} from rank {} to rank {}",
                                    corrupt->bit, corrupt->element, m.seq, m.from, m.to));
        break;
      case CorruptKind::kSwap:
        parts.push_back(fmt::format("swap of messages #{} and #{} from rank {} to rank {}", m.seq,
                                    m.seq + 1, m.from, m.to));
        break;
      case CorruptKind::kDrop:
        parts.push_back(fmt::format("drop of message #{} from rank {} to rank {}", m.seq, m.from, m.to));
        break;
    }
  }
  if (kill) parts.push_back(fmt::format("kill of rank {} before its action #{}", kill->rank, kill->action));
  return fmt::format("{}", fmt::join(parts, "; "));
}

std::string FaultPlan::Json() const {
  JsonValue j;
  j["format"] = "pipeproof fault plan";
  j["version"] = 1;
  j["seed"] = seed;
  if (!drawn_with.empty()) j["drawn_with"] = drawn_with;
  if (target) {
    j["target"] = {{"schedule", target->schedule},
                   {"comms", target->comms},
                   {"computes", target->computes},
                   {"units", target->units}};
  }
  j["poison"] = poison;
  j["ranks"] = JsonValue::array();
  for (size_t r = 0; r < ranks.size(); ++r) {
    const RankFaults& f = ranks[r];
    JsonValue rj;
    rj["rank"] = r;
    rj["straggler"] = f.straggler;
    rj["post_delay_us"] = f.post_delay_us;
    rj["deliver_delay_us"] = f.deliver_delay_us;
    rj["compute_delay_us"] = f.compute_delay_us;
    rj["unit_orders"] = JsonValue::array();
    for (const auto& u : f.unit_orders) rj["unit_orders"].push_back({{"unit", u.unit}, {"order", u.order}});
    j["ranks"].push_back(std::move(rj));
  }
  if (corrupt) {
    JsonValue c = {{"kind", CorruptKindName(corrupt->kind)},
              {"from", corrupt->message.from},
              {"to", corrupt->message.to},
              {"message", corrupt->message.seq}};
    if (corrupt->kind == CorruptKind::kBitflip) {
      c["element"] = corrupt->element;
      c["bit"] = corrupt->bit;
    }
    j["corrupt"] = std::move(c);
  }
  if (kill) j["kill"] = {{"rank", kill->rank}, {"action", kill->action}};
  // One line per key and per rank: dense arrays one number after another read better than one
  // number per line.
  // Names come from file names, which need not be UTF-8: such bytes are written as U+FFFD
  // rather than failing the whole plan.
  auto dump = [](const JsonValue& v) { return v.dump(-1, ' ', false, JsonValue::error_handler_t::replace); };
  std::string text = "{\n";
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it != j.begin()) text += ",\n";
    text += fmt::format(" {}: ", dump(JsonValue(it.key())));
    if (it.key() == "ranks" && !it->empty()) {
      text += "[\n";
      for (size_t r = 0; r < it->size(); ++r) text += fmt::format("  {}{}\n", dump((*it)[r]), r + 1 < it->size() ? "," : "");
      text += " ]";
    } else {
      text += dump(*it);
    }
  }
  return text + "\n}\n";
}

namespace {

// "ranks[2].post_delay_us[5]" as the keys and indices it names.
std::vector<std::string> PathParts(std::string_view path) {
  std::vector<std::string> parts;
  std::string part;
  for (char c : path) {
    if (c == '.' || c == '[' || c == ']') {
      if (!part.empty()) parts.push_back(std::move(part));
      part.clear();
    } else {
      part += c;
    }
  }
  if (!part.empty()) parts.push_back(std::move(part));
  return parts;
}

// Reads a parsed document with a path for every error ("ranks[2].post_delay_us[5]"), placed at
// the value's line and column in the text.
class PlanReader {
 public:
  PlanReader(std::string_view name, std::string_view text) : name_(name), text_(text) {}

  [[noreturn]] void Fail(const std::string& path, const std::string& what) const {
    const TextPlace place = LocateJsonValue(text_, PathParts(path));
    throw InputError::At(name_, place.line, place.col, fmt::format("{}: {}", path, what));
  }

  const JsonValue& Field(const JsonValue& object, const std::string& path, const char* key) const {
    auto it = object.find(key);
    if (it == object.end()) Fail(path, fmt::format("missing \"{}\"", key));
    return *it;
  }

  int64_t Integer(const JsonValue& v, const std::string& path, int64_t lo, int64_t hi) const {
    if (!v.is_number_integer()) Fail(path, "expected an integer");
    int64_t x;
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(hi)) Fail(path, fmt::format("{} is out of range {}..{}", u, lo, hi));
      x = static_cast<int64_t>(u);
    } else {
      x = v.get<int64_t>();
    }
    if (x < lo || x > hi) Fail(path, fmt::format("{} is out of range {}..{}", x, lo, hi));
    return x;
  }

  std::vector<uint32_t> Delays(const JsonValue& object, const std::string& path, const char* key) const {
    std::vector<uint32_t> out;
    auto it = object.find(key);
    if (it == object.end()) return out;
    const std::string here = path + "." + key;
    if (!it->is_array()) Fail(here, "expected an array of delays in microseconds");
    if (it->size() > kMaxSites) Fail(here, fmt::format("more than {} entries", kMaxSites));
    out.reserve(it->size());
    for (size_t i = 0; i < it->size(); ++i) {
      out.push_back(static_cast<uint32_t>(Integer((*it)[i], fmt::format("{}[{}]", here, i), 0, kMaxDelayUs)));
    }
    return out;
  }

  std::vector<int64_t> Counts(const JsonValue& object, const std::string& path, const char* key) const {
    const JsonValue& v = Field(object, path, key);
    const std::string here = path + "." + key;
    if (!v.is_array() || v.size() > static_cast<size_t>(kMaxRanks)) Fail(here, "expected an array with one count per rank");
    std::vector<int64_t> out;
    for (size_t i = 0; i < v.size(); ++i) out.push_back(Integer(v[i], fmt::format("{}[{}]", here, i), 0, kMaxSites));
    return out;
  }

  RankFaults Rank(const JsonValue& v, const std::string& path, size_t index) const {
    if (!v.is_object()) Fail(path, "expected an object");
    if (auto it = v.find("rank"); it != v.end() && Integer(*it, path + ".rank", 0, kMaxRanks) != static_cast<int64_t>(index)) {
      Fail(path + ".rank", fmt::format("ranks must be listed in order: expected {}", index));
    }
    RankFaults f;
    f.post_delay_us = Delays(v, path, "post_delay_us");
    f.deliver_delay_us = Delays(v, path, "deliver_delay_us");
    f.compute_delay_us = Delays(v, path, "compute_delay_us");
    if (auto it = v.find("straggler"); it != v.end()) {
      if (!it->is_number() || !std::isfinite(it->get<double>()) || it->get<double>() < 1 || it->get<double>() > 1000) {
        Fail(path + ".straggler", "expected a slowdown factor between 1 and 1000");
      }
      f.straggler = it->get<double>();
    }
    if (auto it = v.find("unit_orders"); it != v.end()) {
      const std::string here = path + ".unit_orders";
      if (!it->is_array() || it->size() > kMaxSites) Fail(here, "expected an array of {\"unit\", \"order\"}");
      for (size_t i = 0; i < it->size(); ++i) {
        const std::string item = fmt::format("{}[{}]", here, i);
        const JsonValue& u = (*it)[i];
        if (!u.is_object()) Fail(item, "expected an object");
        RankFaults::UnitOrder order;
        order.unit = Integer(Field(u, item, "unit"), item + ".unit", 0, kMaxSites);
        const JsonValue& o = Field(u, item, "order");
        if (!o.is_array() || o.size() > kMaxUnitOps) Fail(item + ".order", "expected an array of op positions");
        std::vector<bool> seen(o.size(), false);
        for (size_t k = 0; k < o.size(); ++k) {
          const int64_t p = Integer(o[k], fmt::format("{}.order[{}]", item, k), 0, static_cast<int64_t>(o.size()) - 1);
          if (seen[p]) Fail(fmt::format("{}.order[{}]", item, k), fmt::format("{} appears twice: not a permutation", p));
          seen[p] = true;
          order.order.push_back(static_cast<int>(p));
        }
        f.unit_orders.push_back(std::move(order));
      }
    }
    return f;
  }

  FaultPlan Plan(const JsonValue& j) const {
    if (!j.is_object()) Fail("plan", "expected a JSON object");
    if (auto it = j.find("format"); it == j.end() || *it != "pipeproof fault plan") {
      Fail("format", "not a pipeproof fault plan (expected \"format\": \"pipeproof fault plan\")");
    }
    if (Integer(Field(j, "plan", "version"), "version", 0, 1000) != 1) Fail("version", "only version 1 is known");
    FaultPlan plan;
    if (auto it = j.find("seed"); it != j.end()) {
      if (!it->is_number_unsigned()) Fail("seed", "expected a non-negative integer");
      plan.seed = it->get<uint64_t>();
    }
    if (auto it = j.find("drawn_with"); it != j.end()) {
      if (!it->is_string()) Fail("drawn_with", "expected a string");
      plan.drawn_with = it->get<std::string>();
    }
    if (auto it = j.find("poison"); it != j.end()) {
      if (!it->is_boolean()) Fail("poison", "expected true or false");
      plan.poison = it->get<bool>();
    }
    if (auto it = j.find("ranks"); it != j.end()) {
      if (!it->is_array() || it->size() > static_cast<size_t>(kMaxRanks)) Fail("ranks", fmt::format("expected an array of at most {} ranks", kMaxRanks));
      for (size_t r = 0; r < it->size(); ++r) plan.ranks.push_back(Rank((*it)[r], fmt::format("ranks[{}]", r), r));
    }
    if (auto it = j.find("corrupt"); it != j.end() && !it->is_null()) {
      if (!it->is_object()) Fail("corrupt", "expected an object");
      const JsonValue& c = *it;
      const JsonValue& kind = Field(c, "corrupt", "kind");
      if (!kind.is_string() || !CorruptKindFromName(kind.get<std::string>())) {
        Fail("corrupt.kind", "expected \"bitflip\", \"swap\" or \"drop\"");
      }
      Corruption k;
      k.kind = *CorruptKindFromName(kind.get<std::string>());
      k.message.from = static_cast<int>(Integer(Field(c, "corrupt", "from"), "corrupt.from", 0, kMaxRanks - 1));
      k.message.to = static_cast<int>(Integer(Field(c, "corrupt", "to"), "corrupt.to", 0, kMaxRanks - 1));
      k.message.seq = Integer(Field(c, "corrupt", "message"), "corrupt.message", 0, kMaxSites);
      if (k.kind == CorruptKind::kBitflip) {
        k.element = Integer(Field(c, "corrupt", "element"), "corrupt.element", 0, int64_t{1} << 40);
        k.bit = static_cast<int>(Integer(Field(c, "corrupt", "bit"), "corrupt.bit", 0, 63));
      }
      plan.corrupt = k;
    }
    if (auto it = j.find("kill"); it != j.end() && !it->is_null()) {
      if (!it->is_object()) Fail("kill", "expected an object");
      Kill k;
      k.rank = static_cast<int>(Integer(Field(*it, "kill", "rank"), "kill.rank", 0, kMaxRanks - 1));
      k.action = Integer(Field(*it, "kill", "action"), "kill.action", 0, kMaxSites);
      plan.kill = k;
    }
    if (auto it = j.find("target"); it != j.end() && !it->is_null()) {
      if (!it->is_object()) Fail("target", "expected an object");
      PlanTarget t;
      const JsonValue& s = Field(*it, "target", "schedule");
      if (!s.is_string()) Fail("target.schedule", "expected a string");
      t.schedule = s.get<std::string>();
      t.comms = Counts(*it, "target", "comms");
      t.computes = Counts(*it, "target", "computes");
      t.units = Counts(*it, "target", "units");
      plan.target = std::move(t);
    }
    return plan;
  }

 private:
  static constexpr size_t kMaxSites = size_t{1} << 24;
  static constexpr size_t kMaxUnitOps = 1 << 16;
  static constexpr int64_t kMaxDelayUs = int64_t{3600} * 1000 * 1000;  // an hour
  std::string_view name_;
  std::string_view text_;
};

}  // namespace

FaultPlan ParseFaultPlan(std::string_view text, std::string_view name) {
  JsonValue j;
  try {
    j = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    // A syntax error (parse_error) or a number too big for any type (out_of_range 406, found by
    // fuzz/plan_fuzzer).
    throw InputError(fmt::format("not valid JSON: {}", JsonParserMessage(e.what())), std::string(name));
  }
  if (const std::optional<std::string> duplicate = FindDuplicateKey(text)) {
    throw InputError(fmt::format("key {} appears twice in one object", Quote(*duplicate)),
                     std::string(name));
  }
  return PlanReader(name, text).Plan(j);
}

// Far beyond any plan the limits allow to be drawn (a few arrays of 2^22 delays), so that a
// device or a huge file is refused before it is read.
constexpr int64_t kMaxPlanBytes = int64_t{1} << 30;

FaultPlan ReadFaultPlan(const std::string& path) {
  return ParseFaultPlan(ReadFileBounded(path, kMaxPlanBytes, "fault plan"), path);
}

}  // namespace pipeproof
