#include "schedule/schedule.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <tuple>
#include <utility>

namespace pipeproof {

Op SentBy(Op wait_send) { return wait_send == Op::kWaitSendF ? Op::kSendF : Op::kSendB; }
Op WaitSendFor(Op send) { return send == Op::kSendF ? Op::kWaitSendF : Op::kWaitSendB; }

bool operator==(const Action& a, const Action& b) {
  if (a.op != b.op) return false;
  if (a.op == Op::kWait) return true;
  if (IsDataParallel(a.op)) return a.stage == b.stage;
  if (a.stage != b.stage || a.microbatch != b.microbatch) return false;
  return a.op != Op::kOverlapFB || a.back == b.back;
}

std::vector<int> WaitedSendPositions(const std::vector<Action>& program) {
  std::vector<int> waited(program.size(), -1);
  std::map<std::tuple<Op, int32_t, int32_t>, int> last_send;  // (SEND op, stage, mb) -> position
  for (int i = 0; i < static_cast<int>(program.size()); ++i) {
    const Action& a = program[i];
    if (IsSend(a.op)) {
      last_send[{a.op, a.stage, a.microbatch}] = i;
    } else if (IsWaitSend(a.op)) {
      auto it = last_send.find({SentBy(a.op), a.stage, a.microbatch});
      if (it != last_send.end()) waited[i] = it->second;
    }
  }
  return waited;
}

std::string_view OpName(Op op) {
  switch (op) {
    case Op::kForward: return "F";
    case Op::kBackward: return "B";
    case Op::kInputGrad: return "I";
    case Op::kWeightGrad: return "W";
    case Op::kOverlapFB: return "OVERLAP_F_B";
    case Op::kSendF: return "SEND_F";
    case Op::kRecvF: return "RECV_F";
    case Op::kSendB: return "SEND_B";
    case Op::kRecvB: return "RECV_B";
    case Op::kWait: return "WAIT";
    case Op::kWaitSendF: return "WAIT_SEND_F";
    case Op::kWaitSendB: return "WAIT_SEND_B";
    case Op::kUnshard: return "UNSHARD";
    case Op::kReshard: return "RESHARD";
    case Op::kReduceGrad: return "REDUCE_GRAD";
    case Op::kWaitReduceGrad: return "WAIT_REDUCE_GRAD";
  }
  return "?";
}

std::string ToString(const Task& task) {
  if (task.op == Op::kWait) return "WAIT";
  if (IsDataParallel(task.op)) return fmt::format("{}{}", task.stage, OpName(task.op));
  return fmt::format("{}{}{}", task.stage, OpName(task.op), task.microbatch);
}

std::string ToString(const Action& action) {
  if (action.op == Op::kWait) return "WAIT";
  if (action.op == Op::kOverlapFB) {
    return fmt::format("({};{})OVERLAP_F_B", ToString(action.TaskAt(0)), ToString(action.back));
  }
  return ToString(action.TaskAt(0));
}

namespace {

// Reads a non-negative decimal at text[pos...]; returns false when there is none or it overflows.
// Inlined: the readers call it twice for each of millions of actions.
[[gnu::always_inline]] inline bool ReadNumber(std::string_view text, size_t& pos, int32_t& value,
                                              bool& overflow) {
  overflow = false;
  size_t end = pos;
  while (end < text.size() && text[end] >= '0' && text[end] <= '9') ++end;
  if (end == pos) return false;
  // Nine digits always fit an int32: add them up here (the usual case, a reader's hot path) and
  // leave longer numbers, which may overflow, to from_chars.
  if (end - pos <= 9) {
    int32_t v = 0;
    for (size_t k = pos; k < end; ++k) v = v * 10 + (text[k] - '0');
    value = v;
    pos = end;
    return true;
  }
  auto [ptr, ec] = std::from_chars(text.data() + pos, text.data() + end, value);
  if (ec == std::errc::result_out_of_range) {
    overflow = true;
    return false;
  }
  pos = end;
  return true;
}

struct OpSpelling {
  std::string_view name;
  Op op;
};
// Longest first among those sharing a prefix: "WAIT_SEND_F" before "W", "WAIT_REDUCE_GRAD"
// before "W", "BW" before "B". Otherwise the most frequent first (F and B, then SEND/RECV), since
// a reader of millions of actions tries them in this order for each.
constexpr OpSpelling kSpellings[] = {
    {"F", Op::kForward},
    {"BW", Op::kBackward},
    {"B", Op::kBackward},
    {"SEND_F", Op::kSendF},
    {"RECV_F", Op::kRecvF},
    {"SEND_B", Op::kSendB},
    {"RECV_B", Op::kRecvB},
    {"I", Op::kInputGrad},
    {"WAIT_SEND_F", Op::kWaitSendF},
    {"WAIT_SEND_B", Op::kWaitSendB},
    {"WAIT_REDUCE_GRAD", Op::kWaitReduceGrad},
    {"W", Op::kWeightGrad},
    {"REDUCE_GRAD", Op::kReduceGrad},
    {"UNSHARD", Op::kUnshard},
    {"RESHARD", Op::kReshard},
};

// The first spelling in kSpellings that `rest` starts with, or nullptr. Unrolled over the table,
// each comparison is with a name of known length, which the compiler turns into a few loads in
// place of a memcmp call: the readers do this for each of millions of actions.
template <size_t... k>
const OpSpelling* SpellingAt(std::string_view rest, std::index_sequence<k...>) {
  const OpSpelling* found = nullptr;
  if (rest.empty()) return found;
  ((rest.front() == kSpellings[k].name.front() && rest.starts_with(kSpellings[k].name) &&
    (found = &kSpellings[k])) ||
   ...);
  return found;
}

[[noreturn]] void Fail(int* column, size_t at, std::string message) {
  if (column) *column = static_cast<int>(at);
  throw InputError(std::move(message));
}

Action ParseSingle(std::string_view text, size_t base, const ActionSyntax& syntax, int* column) {
  size_t pos = 0;
  int32_t stage = 0;
  bool overflow = false;
  if (!ReadNumber(text, pos, stage, overflow)) {
    Fail(column, base, overflow ? fmt::format("stage number in {} is too large", Quote(text))
                                : fmt::format("{} is not an action: it must start with a "
                                              "stage number, as in 0F0 or 3SEND_B2",
                                              Quote(text)));
  }
  std::string_view rest = text.substr(pos);
  const OpSpelling* spelling = SpellingAt(rest, std::make_index_sequence<std::size(kSpellings)>());
  // "0WAIT_SEND_X0" is a misspelt WAIT_SEND, not a W with a bad microbatch.
  if (spelling && spelling->op == Op::kWeightGrad && rest.starts_with("WAIT")) spelling = nullptr;
  if (!spelling) {
    Fail(column, base + pos,
         fmt::format("{} has no known action after the stage number (expected F, B, I, W, "
                     "SEND_F, RECV_F, SEND_B, RECV_B, WAIT_SEND_F, WAIT_SEND_B, UNSHARD, "
                     "RESHARD, REDUCE_GRAD or WAIT_REDUCE_GRAD)",
                     Quote(text)));
  }
  if (spelling->name == "BW" && !syntax.legacy_bw) {
    Fail(column, base + pos,
         fmt::format("{}: BW is PyTorch's legacy spelling of a full backward; read the file "
                     "with --legacy-bw",
                     Quote(text)));
  }
  pos += spelling->name.size();
  if (IsDataParallel(spelling->op)) {
    // PyTorch writes these without a microbatch; they act on the stage as a whole.
    if (pos != text.size()) {
      Fail(column, base + pos,
           fmt::format("unexpected {} after action {}: {} names a stage and no microbatch",
                       Quote(text.substr(pos)), Quote(text.substr(0, pos)), spelling->name));
    }
    return Action::DataParallel(spelling->op, stage);
  }
  int32_t microbatch = 0;
  if (!ReadNumber(text, pos, microbatch, overflow)) {
    Fail(column, base + pos,
         overflow ? fmt::format("microbatch number in {} is too large", Quote(text))
                  : fmt::format("{} has no microbatch number after {}", Quote(text),
                                spelling->name));
  }
  if (pos != text.size()) {
    Fail(column, base + pos, fmt::format("unexpected {} after action {}",
                                         Quote(text.substr(pos)), Quote(text.substr(0, pos))));
  }
  return Action{spelling->op, stage, microbatch, {}};
}

}  // namespace

Action ParseAction(std::string_view text, const ActionSyntax& syntax, int* column) {
  if (column) *column = 0;
  if (text.empty()) Fail(column, 0, "empty action");
  if (text == "WAIT") return Action::Wait();
  if (text.front() != '(') return ParseSingle(text, 0, syntax, column);

  constexpr std::string_view kSuffix = ")OVERLAP_F_B";
  size_t close = text.find(')');
  if (close == std::string_view::npos) Fail(column, 0, fmt::format("{} has no closing ')'", Quote(text)));
  if (text.substr(close) != kSuffix) {
    Fail(column, close,
         fmt::format("{}: a parenthesised pair must be written (sFm;tBn)OVERLAP_F_B",
                     Quote(text)));
  }
  std::string_view inner = text.substr(1, close - 1);
  size_t semi = inner.find(';');
  if (semi == std::string_view::npos || inner.find(';', semi + 1) != std::string_view::npos) {
    Fail(column, 1,
         fmt::format("{}: OVERLAP_F_B holds exactly two actions separated by ';'",
                     Quote(text)));
  }
  Action fwd = ParseSingle(inner.substr(0, semi), 1, syntax, column);
  Action bwd = ParseSingle(inner.substr(semi + 1), 1 + semi + 1, syntax, column);
  if (fwd.op != Op::kForward) {
    Fail(column, 1, fmt::format("{}: the first action of OVERLAP_F_B must be a forward", Quote(text)));
  }
  if (bwd.op != Op::kBackward && bwd.op != Op::kInputGrad) {
    Fail(column, 1 + semi + 1,
         fmt::format("{}: the second action of OVERLAP_F_B must be a backward (B or I)",
                     Quote(text)));
  }
  return Action::OverlapFB(fwd.stage, fwd.microbatch, bwd.op, bwd.stage, bwd.microbatch);
}

std::vector<int> LoopPlacement(int ranks, int stages) {
  std::vector<int> placement(stages);
  for (int s = 0; s < stages; ++s) placement[s] = s % ranks;
  return placement;
}

std::vector<int> VPlacement(int ranks, int stages) {
  std::vector<int> placement(stages);
  for (int s = 0; s < stages; ++s) placement[s] = s < ranks ? s : 2 * ranks - 1 - s;
  return placement;
}

int Schedule::ParamBlocks() const {
  int blocks = 0;
  for (int p : params) blocks = std::max(blocks, p + 1);
  return blocks;
}

int64_t Schedule::ActionCount() const {
  int64_t n = 0;
  for (const auto& actions : program) n += static_cast<int64_t>(actions.size());
  return n;
}

void CompleteTopology(Schedule& s) {
  CheckLimits(s.ranks, s.stages, s.microbatches);
  if (s.placement.empty()) s.placement = LoopPlacement(s.ranks, s.stages);
  if (s.params.empty()) {
    s.params.resize(s.stages);
    for (int i = 0; i < s.stages; ++i) s.params[i] = i;
  }
  if (s.routes.empty()) {
    std::vector<int> all(s.stages);
    for (int i = 0; i < s.stages; ++i) all[i] = i;
    s.routes.assign(s.microbatches, all);
  }
  if (static_cast<int>(s.placement.size()) != s.stages) {
    throw InputError(fmt::format("placement lists {} ranks for {} stages",
                                 s.placement.size(), s.stages));
  }
  for (int st = 0; st < s.stages; ++st) {
    if (s.placement[st] < 0 || s.placement[st] >= s.ranks) {
      throw InputError(fmt::format("placement puts stage {} on rank {}, but ranks are 0..{}", st,
                                   s.placement[st], s.ranks - 1));
    }
  }
  if (static_cast<int>(s.params.size()) != s.stages) {
    throw InputError(fmt::format("params lists {} blocks for {} stages", s.params.size(),
                                 s.stages));
  }
  for (int st = 0; st < s.stages; ++st) {
    if (s.params[st] < 0 || s.params[st] >= s.stages) {
      RequireRange(fmt::format("params of stage {}", st), s.params[st], 0, s.stages - 1);
    }
  }
  if (static_cast<int>(s.routes.size()) != s.microbatches) {
    throw InputError(fmt::format("routes given for {} microbatches, but there are {}",
                                 s.routes.size(), s.microbatches));
  }
  std::vector<int> seen(s.stages, -1);
  for (int m = 0; m < s.microbatches; ++m) {
    if (s.routes[m].empty()) throw InputError(fmt::format("microbatch {} has an empty route", m));
    for (int st : s.routes[m]) {
      if (st < 0 || st >= s.stages) {
        RequireRange(fmt::format("a stage on microbatch {}'s route", m), st, 0, s.stages - 1);
      }
      if (seen[st] == m) {
        throw InputError(fmt::format("microbatch {}'s route passes stage {} twice", m, st));
      }
      seen[st] = m;
    }
  }
  if (static_cast<int>(s.program.size()) < s.ranks) s.program.resize(s.ranks);
  if (static_cast<int>(s.program.size()) > s.ranks) {
    throw InputError(fmt::format("the program has {} ranks, the header says {}", s.program.size(),
                                 s.ranks));
  }
}

RouteIndex::RouteIndex(const Schedule& schedule) : stages_(schedule.stages) {
  std::map<std::vector<int>, int> ids;
  route_of_.resize(schedule.routes.size());
  for (size_t m = 0; m < schedule.routes.size(); ++m) {
    auto [it, inserted] = ids.emplace(schedule.routes[m], static_cast<int>(routes_.size()));
    if (inserted) {
      routes_.push_back(schedule.routes[m]);
      std::vector<int32_t> pos(stages_, -1);
      for (size_t i = 0; i < schedule.routes[m].size(); ++i) {
        int st = schedule.routes[m][i];
        if (st >= 0 && st < stages_) pos[st] = static_cast<int32_t>(i);
      }
      pos_.push_back(std::move(pos));
    }
    route_of_[m] = it->second;
  }
}

bool RouteIndex::IsFirst(int stage, int microbatch) const { return Position(stage, microbatch) == 0; }

bool RouteIndex::IsLast(int stage, int microbatch) const {
  int p = Position(stage, microbatch);
  return p >= 0 && p + 1 == RouteLength(microbatch);
}

int RouteIndex::RouteLength(int microbatch) const {
  return static_cast<int>(routes_[route_of_[microbatch]].size());
}

std::string ToString(const Payload& payload) {
  return fmt::format("{} {}->{} mb {}",
                     payload.kind == Payload::Kind::kActivation ? "activation" : "gradient",
                     payload.from, payload.to, payload.microbatch);
}

std::optional<Message> MessageOf(const Schedule& schedule, const RouteIndex& routes,
                                 const Task& comm) {
  const int s = comm.stage, m = comm.microbatch;
  int other = -1;
  Payload p;
  p.microbatch = m;
  switch (comm.op) {
    case Op::kSendF:
      other = routes.Next(s, m);
      p = {Payload::Kind::kActivation, s, other, m};
      break;
    case Op::kRecvF:
      other = routes.Prev(s, m);
      p = {Payload::Kind::kActivation, other, s, m};
      break;
    case Op::kSendB:
      other = routes.Prev(s, m);
      p = {Payload::Kind::kGradient, s, other, m};
      break;
    case Op::kRecvB:
      other = routes.Next(s, m);
      p = {Payload::Kind::kGradient, other, s, m};
      break;
    default:
      return std::nullopt;
  }
  if (other < 0) return std::nullopt;
  return Message{p, schedule.placement[other]};
}

std::optional<StreamLayout> StreamLayoutFromName(std::string_view name) {
  for (StreamLayout layout : kStreamLayouts) {
    if (StreamLayoutName(layout) == name) return layout;
  }
  return std::nullopt;
}

std::string_view StreamLayoutName(StreamLayout layout) {
  switch (layout) {
    case StreamLayout::kRank: return "rank";
    case StreamLayout::kPair: return "pair";
    case StreamLayout::kEdge: return "edge";
  }
  return "?";
}

int StreamOf(StreamLayout layout, int peer, bool send) {
  switch (layout) {
    case StreamLayout::kRank: return 0;
    case StreamLayout::kPair: return peer;
    case StreamLayout::kEdge: return 2 * peer + (send ? 1 : 0);
  }
  return 0;
}

std::string ToString(const PassKey& key) {
  const char* name = key.pass == Pass::kForward ? "F" : key.pass == Pass::kBackward ? "B" : "W";
  return fmt::format("{}{}{}", key.stage, name, key.microbatch);
}

PassKeys Produces(const Task& t) {
  switch (t.op) {
    case Op::kForward: return {{Pass::kForward, t.stage, t.microbatch}};
    case Op::kBackward:
      return {{Pass::kBackward, t.stage, t.microbatch}, {Pass::kWeight, t.stage, t.microbatch}};
    case Op::kInputGrad: return {{Pass::kBackward, t.stage, t.microbatch}};
    case Op::kWeightGrad: return {{Pass::kWeight, t.stage, t.microbatch}};
    default: return {};
  }
}

PassKeys Needs(const Task& t, const RouteIndex& routes) {
  const int s = t.stage, m = t.microbatch;
  PassKeys needs;
  switch (t.op) {
    case Op::kForward:
      if (int prev = routes.Prev(s, m); prev >= 0) needs.push_back({Pass::kForward, prev, m});
      break;
    case Op::kBackward:
    case Op::kInputGrad:
      needs.push_back({Pass::kForward, s, m});
      if (int next = routes.Next(s, m); next >= 0) needs.push_back({Pass::kBackward, next, m});
      break;
    case Op::kWeightGrad:
      needs.push_back({Pass::kBackward, s, m});
      break;
    default:
      break;
  }
  return needs;
}

}  // namespace pipeproof
