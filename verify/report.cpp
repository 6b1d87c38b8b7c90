// The report: text for people, JSON for programs (docs/design.md, "Verification"), and the small
// pieces of text the checks share.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "verify/internal.h"

namespace pipeproof {

using verify_internal::Endpoint;

namespace verify_internal {

void Findings::Add(std::string line) {
  if (static_cast<int>(lines_.size()) < kKept) lines_.push_back(std::move(line));
  ++count_;
}

CheckResult Findings::Result(std::string name, const std::string& pass_message,
                             const std::string& what) const {
  CheckResult result;
  result.name = std::move(name);
  if (count_ == 0) {
    result.message = pass_message;
    return result;
  }
  result.status = CheckStatus::kFail;
  result.message = count_ == 1 ? lines_.front()
                               : fmt::format("{} {}s, the first: {}", count_, what, lines_.front());
  if (count_ > 1) result.details = lines_;
  if (count_ > kKept) result.details.push_back(fmt::format("... and {} more", count_ - kKept));
  return result;
}

std::string Where(const Schedule& s, int rank, int index) {
  return fmt::format("rank {} [{}] {}", rank, index, ToString(s.program[rank][index]));
}

CheckResult Skipped(std::string name, const std::string& why) {
  return {std::move(name), CheckStatus::kSkipped, "skipped: " + why, {}, std::nullopt};
}

std::vector<std::string> CycleLines(const std::vector<CycleStep>& cycle) {
  std::vector<std::string> lines;
  for (const CycleStep& step : cycle) {
    lines.push_back(
        fmt::format("rank {} [{}] {} {}", step.rank, step.index, step.action, step.waits_for));
  }
  return lines;
}

std::vector<std::string> GridAround(const Schedule& s, const std::vector<Endpoint>& marked) {
  constexpr int kContext = 2;
  constexpr size_t kMaxRows = 24;
  std::set<int> ranks;
  std::set<std::pair<int, int>> stuck;
  std::set<int> rows;
  for (const Endpoint& e : marked) {
    ranks.insert(e.rank);
    stuck.insert({e.rank, e.index});
    for (int i = std::max(0, e.index - kContext); i <= e.index + kContext; ++i) rows.insert(i);
  }
  std::vector<int> shown_rows;
  for (int i : rows) {
    bool any = false;
    for (int r : ranks) any = any || i < static_cast<int>(s.program[r].size());
    if (any) shown_rows.push_back(i);
  }
  if (shown_rows.size() > kMaxRows) shown_rows.resize(kMaxRows);
  auto cell = [&](int r, int i) {
    if (i >= static_cast<int>(s.program[r].size())) return std::string();
    std::string text = ToString(s.program[r][i]);
    return stuck.count({r, i}) ? "*" + text : " " + text;
  };
  std::map<int, size_t> width;
  for (int r : ranks) {
    width[r] = fmt::format(" Rank {}", r).size();
    for (int i : shown_rows) width[r] = std::max(width[r], cell(r, i).size());
  }
  const int label =
      static_cast<int>(std::to_string(shown_rows.empty() ? 0 : shown_rows.back()).size());
  std::vector<std::string> out;
  std::string header(fmt::format("Step {:0{}}:", 0, label).size(), ' ');
  for (int r : ranks) header += fmt::format("{:<{}} ", fmt::format(" Rank {}", r), width[r]);
  out.push_back(header);
  int previous = -1;
  for (int i : shown_rows) {
    if (previous >= 0 && i != previous + 1) out.push_back("  ...");
    std::string row = fmt::format("Step {:0{}}:", i, label);
    for (int r : ranks) row += fmt::format("{:<{}} ", cell(r, i), width[r]);
    while (!row.empty() && row.back() == ' ') row.pop_back();
    out.push_back(row);
    previous = i;
  }
  out.push_back("(* marks the blocked actions)");
  return out;
}

}  // namespace verify_internal

namespace {

// Numbers without trailing noise: 3 rather than 3.000000, 4.2 rather than 4.2000000000000002.
std::string Number(double x) {
  if (!std::isfinite(x)) return "inf";
  std::string text = fmt::format("{:.6f}", x);
  while (text.back() == '0') text.pop_back();
  if (text.back() == '.') text.pop_back();
  return text == "-0" ? "0" : text;
}

nlohmann::ordered_json JsonNumber(double x) {
  if (!std::isfinite(x)) return nullptr;
  return std::round(x * 1e9) / 1e9;
}

std::string_view StatusWord(CheckStatus status) {
  switch (status) {
    case CheckStatus::kPass:
      return "ok";
    case CheckStatus::kFail:
      return "FAIL";
    case CheckStatus::kSkipped:
      return "skipped";
  }
  return "?";
}

nlohmann::ordered_json TimingObject(const CheckResult* check,
                                    const std::optional<Timeline>& timeline, const Costs& costs,
                                    CommModel model, StreamLayout streams) {
  nlohmann::ordered_json j;
  j["name"] = "timing";
  j["ok"] = check ? check->ok() : timeline.has_value();
  if (check && check->skipped()) j["skipped"] = true;
  j["message"] = check ? check->message : "";
  j["model"] = std::string(CommModelName(model));
  j["streams"] = std::string(StreamLayoutName(streams));
  j["costs"] = {{"F", costs.forward},     {"B", costs.backward},    {"I", costs.input_grad},
                {"W", costs.weight_grad}, {"FB", costs.overlap_fb}, {"latency", costs.latency}};
  if (timeline && timeline->complete) {
    j["makespan"] = JsonNumber(timeline->makespan);
    nlohmann::ordered_json busy = nlohmann::ordered_json::array(),
                           bubble = nlohmann::ordered_json::array();
    for (double b : timeline->busy) busy.push_back(JsonNumber(b));
    for (double b : timeline->bubble) bubble.push_back(JsonNumber(b));
    j["busy"] = busy;
    j["bubble"] = bubble;
    j["max_bubble"] = JsonNumber(timeline->MaxBubble());
    j["bubble_ratio"] = JsonNumber(timeline->BubbleRatio());
  } else {
    j["makespan"] = nullptr;
    j["busy"] = nlohmann::ordered_json::array();
    j["bubble"] = nlohmann::ordered_json::array();
  }
  return j;
}

std::string TimingSummary(const Timeline& t) {
  int worst = 0;
  for (int r = 0; r < static_cast<int>(t.bubble.size()); ++r) {
    if (t.bubble[r] > t.bubble[worst]) worst = r;
  }
  return fmt::format("makespan {}, largest bubble {} (rank {}), bubble ratio {}",
                     Number(t.makespan), Number(t.bubble.empty() ? 0 : t.bubble[worst]), worst,
                     Number(t.BubbleRatio()));
}

std::string NumberList(const std::vector<double>& xs) {
  std::vector<std::string> items;
  for (double x : xs) items.push_back(Number(x));
  return fmt::format("{}", fmt::join(items, " "));
}

std::vector<std::string> TimingRows(const Timeline& t) {
  return {"busy per rank:   " + NumberList(t.busy), "bubble per rank: " + NumberList(t.bubble)};
}

}  // namespace

std::optional<CommModel> CommModelFromName(std::string_view name) {
  if (name == "nccl") return CommModel::kNccl;
  if (name == "eager") return CommModel::kEager;
  return std::nullopt;
}

std::string_view CommModelName(CommModel model) {
  return model == CommModel::kNccl ? "nccl" : "eager";
}

std::string_view ProofOutcomeName(ProofVerdict::Outcome outcome) {
  switch (outcome) {
    case ProofVerdict::Outcome::kNotAsked: return "not-asked";
    case ProofVerdict::Outcome::kNoZ3: return "no-z3";
    case ProofVerdict::Outcome::kDeadlockFree: return "deadlock-free";
    case ProofVerdict::Outcome::kDeadlock: return "deadlock";
    case ProofVerdict::Outcome::kSkipped: return "skipped";
  }
  return "?";
}

std::string DescribeSemantics(CommModel model, StreamLayout streams) {
  if (model == CommModel::kEager) return "the eager model";
  const char* layout = streams == StreamLayout::kRank   ? "one stream per rank"
                       : streams == StreamLayout::kPair ? "one stream per rank pair"
                                                        : "one stream per directed edge";
  return fmt::format("the nccl model with {} (--streams {})", layout, StreamLayoutName(streams));
}

Costs ParseCosts(std::string_view text, Costs base) {
  Costs c = base;
  bool given_i = false, given_fb = false, given_f = false, given_b = false, given_w = false;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string_view::npos) comma = text.size();
    std::string item(text.substr(pos, comma - pos));
    pos = comma + 1;
    item.erase(std::remove(item.begin(), item.end(), ' '), item.end());
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string::npos) {
      throw InputError(
          fmt::format("cost {} is not KEY=VALUE (keys F, B, I, W, FB, L)", Quote(item)));
    }
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    double number = 0;
    size_t used = 0;
    try {
      number = std::stod(value, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (value.empty() || used != value.size() || !std::isfinite(number) || number < 0) {
      throw InputError(
          fmt::format("cost {}: {} is not a non-negative number", Quote(item), Quote(value)));
    }
    if (key == "F") {
      c.forward = number;
      given_f = true;
    } else if (key == "B") {
      c.backward = number;
      given_b = true;
    } else if (key == "I") {
      c.input_grad = number;
      given_i = true;
    } else if (key == "W") {
      c.weight_grad = number;
      given_w = true;
    } else if (key == "FB" || key == "F&B") {
      c.overlap_fb = number;
      given_fb = true;
    } else if (key == "L" || key == "latency") {
      c.latency = number;
    } else {
      throw InputError(
          fmt::format("unknown cost {} in {} (keys F, B, I, W, FB, L)", Quote(key), Quote(item)));
    }
  }
  // Costs left out follow from those given: the input-gradient part is what the weight gradient
  // leaves of a full backward, and an overlapped pair costs at most its two halves.
  if (!given_i && (given_b || given_w)) {
    if (c.weight_grad > c.backward) {
      throw InputError(fmt::format("cost W={} exceeds B={}: give I as well (I defaults to B - W)",
                                   Number(c.weight_grad), Number(c.backward)));
    }
    c.input_grad = c.backward - c.weight_grad;
  }
  if (!given_fb && (given_f || given_b)) c.overlap_fb = c.forward + c.backward;
  return c;
}

std::string ToString(const Costs& c) {
  return fmt::format("F={} B={} I={} W={} FB={} latency={}", Number(c.forward), Number(c.backward),
                     Number(c.input_grad), Number(c.weight_grad), Number(c.overlap_fb),
                     Number(c.latency));
}

double CostOf(Op op, const Costs& c) {
  switch (op) {
    case Op::kForward:
      return c.forward;
    case Op::kBackward:
      return c.backward;
    case Op::kInputGrad:
      return c.input_grad;
    case Op::kWeightGrad:
      return c.weight_grad;
    case Op::kOverlapFB:
      return c.overlap_fb;
    default:
      return 0;
  }
}

double Timeline::MaxBubble() const {
  return bubble.empty() ? 0 : *std::max_element(bubble.begin(), bubble.end());
}

double Timeline::BubbleRatio() const {
  if (bubble.empty() || makespan <= 0) return 0;
  double sum = 0;
  for (double b : bubble) sum += b;
  return sum / (static_cast<double>(bubble.size()) * makespan);
}

const CheckResult* VerifyReport::Find(std::string_view name) const {
  for (const CheckResult& c : checks) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string VerifyReport::Text() const {
  std::string out;
  if (lowered) out += lowering_note + "\n";
  for (const CheckResult& c : checks) {
    out += fmt::format("{:<13} {:<7} {}\n", c.name, StatusWord(c.status), c.message);
    for (const std::string& line : c.details) out += "    " + line + "\n";
  }
  const CheckResult* first_failure = nullptr;
  for (const CheckResult& c : checks) {
    if (!c.ok()) {
      first_failure = &c;
      break;
    }
  }
  out += first_failure ? fmt::format("verdict: FAILED ({})\n", first_failure->name)
                       : std::string("verdict: sound\n");
  return out;
}

std::string VerifyReport::Json() const {
  nlohmann::ordered_json j;
  j["ok"] = ok;
  j["model"] = std::string(CommModelName(model));
  j["streams"] = std::string(StreamLayoutName(streams));
  j["lowered"] = lowered;
  nlohmann::ordered_json checks_json = nlohmann::ordered_json::array();
  for (const CheckResult& c : checks) {
    nlohmann::ordered_json cj;
    if (c.name == "timing") {
      cj = TimingObject(&c, timeline, costs, model, streams);
    } else {
      cj["name"] = c.name;
      cj["ok"] = c.ok();
      if (c.skipped()) cj["skipped"] = true;
      cj["message"] = c.message;
    }
    cj["details"] = c.details;
    if (c.name == "deadlock") {
      nlohmann::ordered_json steps = nlohmann::ordered_json::array();
      for (const CycleStep& s : cycle) {
        steps.push_back({{"rank", s.rank},
                         {"index", s.index},
                         {"action", s.action},
                         {"waits_for", s.waits_for}});
      }
      cj["cycle"] = steps;
      nlohmann::ordered_json layouts = nlohmann::ordered_json::object();
      for (const auto& [layout, sound] : layout_verdicts) {
        layouts[std::string(StreamLayoutName(layout))] = sound;
      }
      cj["deadlock_free_under"] = layouts;  // per stream layout decided (nccl model)
      cj["setup_deadlock"] = setup_deadlock;
      if (c.proof) {
        const ProofVerdict& p = *c.proof;
        nlohmann::ordered_json proof;
        proof["outcome"] = std::string(ProofOutcomeName(p.outcome));
        proof["agrees_with_simulation"] = p.agrees_with_simulation;
        if (!p.method.empty()) proof["method"] = p.method;
        if (!p.note.empty()) proof[p.outcome == ProofVerdict::Outcome::kSkipped ? "skipped_because" : "note"] = p.note;
        if (p.proven()) {
          proof["seconds"] = JsonNumber(p.seconds);
          proof["variables"] = p.variables;
          proof["constraints"] = p.constraints;
          proof["proved_constraints"] = p.proved_constraints;
        }
        cj["proof"] = std::move(proof);
      }
    }
    if (c.name == "memory") {
      cj["peak"] = memory.peak;
      cj["peak_index"] = memory.peak_index;
      cj["stash_peak"] = memory.stash_peak;
      cj["stash_peak_index"] = memory.stash_peak_index;
      cj["bound"] =
          memory.bound ? nlohmann::ordered_json(*memory.bound) : nlohmann::ordered_json(nullptr);
      cj["bound_source"] = memory.bound_source;
    }
    checks_json.push_back(std::move(cj));
  }
  j["checks"] = std::move(checks_json);
  return j.dump(2) + "\n";
}

std::string TimingJson(const Timeline& timeline, const Costs& costs, CommModel model,
                       StreamLayout streams) {
  CheckResult check;
  check.name = "timing";
  if (timeline.complete) {
    check.message = TimingSummary(timeline);
  } else {
    check.status = CheckStatus::kFail;
    check.message = "the execution deadlocks; run pipeproof verify for the cycle";
  }
  return TimingObject(&check, timeline, costs, model, streams).dump(2) + "\n";
}

std::string TimingText(const Timeline& timeline, const Costs& costs, CommModel model,
                       StreamLayout streams) {
  std::string out =
      fmt::format("timing under {}, costs {}\n", DescribeSemantics(model, streams), ToString(costs));
  if (!timeline.complete)
    return out + "the execution deadlocks; run pipeproof verify for the cycle\n";
  out += TimingSummary(timeline) + "\n";
  for (const std::string& row : TimingRows(timeline)) out += "  " + row + "\n";
  return out;
}

namespace verify_internal {

CheckResult TimingCheck(const Timeline& timeline, const Costs& costs, CommModel model,
                        StreamLayout streams, bool default_costs) {
  CheckResult check;
  check.name = "timing";
  const std::string under = model == CommModel::kNccl && streams != StreamLayout::kRank
                                ? fmt::format("nccl (--streams {})", StreamLayoutName(streams))
                                : std::string(CommModelName(model));
  check.message = TimingSummary(timeline) +
                  fmt::format(" under {} with {}{}", under, ToString(costs),
                              default_costs ? " (the default costs)" : "");
  check.details = TimingRows(timeline);
  return check;
}

}  // namespace verify_internal

}  // namespace pipeproof
