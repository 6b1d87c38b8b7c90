// structure: shape, counts and placement. Everything the later checks take for granted.

#include <fmt/format.h>

#include "verify/internal.h"

namespace pipeproof::verify_internal {
namespace {

// How often each task of one (stage, microbatch) occurs.
struct TaskCounts {
  uint8_t f = 0, b = 0, i = 0, w = 0;
  void Count(Op op) {
    auto bump = [](uint8_t& n) { n = n == 255 ? 255 : n + 1; };
    switch (op) {
      case Op::kForward:
        bump(f);
        break;
      case Op::kBackward:
        bump(b);
        break;
      case Op::kInputGrad:
        bump(i);
        break;
      case Op::kWeightGrad:
        bump(w);
        break;
      default:
        break;
    }
  }
  // Exactly one F, and either one B alone or one I with one W.
  bool Complete() const {
    return f == 1 && ((b == 1 && i == 0 && w == 0) || (b == 0 && i == 1 && w == 1));
  }
};

std::string DescribeCounts(int stage, int mb, const TaskCounts& c) {
  std::vector<std::string> problems;
  if (c.f != 1) problems.push_back(fmt::format("{} F", c.f));
  if (c.b > 1) problems.push_back(fmt::format("{} B", c.b));
  if (c.b >= 1 && (c.i > 0 || c.w > 0)) problems.push_back("both B and I/W");
  if (c.b == 0 && c.i == 0 && c.w == 0) problems.push_back("no backward (B or I+W)");
  if (c.b == 0 && c.i != c.w) {
    problems.push_back(c.w == 0   ? fmt::format("{} I without W", c.i)
                       : c.i == 0 ? fmt::format("{} W without I", c.w)
                                  : fmt::format("{} I and {} W", c.i, c.w));
  } else if (c.b == 0 && c.i > 1) {
    problems.push_back(fmt::format("{} I and {} W", c.i, c.w));
  }
  return fmt::format(
      "stage {} microbatch {}: {} (needs exactly one F and one B, or one I and "
      "one W)",
      stage, mb, fmt::join(problems, ", "));
}

class StructureCheck {
 public:
  explicit StructureCheck(const Schedule& s) : s_(s), routes_(s) {}

  CheckResult Run() {
    if (static_cast<int>(s_.program.size()) != s_.ranks) {
      found_.Add(
          fmt::format("the program has {} ranks, the schedule {}", s_.program.size(), s_.ranks));
      return Result();
    }
    counts_.assign(static_cast<size_t>(s_.stages) * s_.microbatches, {});
    for (int r = 0; r < s_.ranks; ++r) {
      for (int i = 0; i < static_cast<int>(s_.program[r].size()); ++i) CheckAction(r, i);
    }
    CheckCounts();
    return Result();
  }

 private:
  CheckResult Result() const {
    int64_t actions = s_.ActionCount();
    return found_.Result("structure",
                         fmt::format("{} ranks, {} stages, {} microbatches, {} actions; every "
                                     "task once, every action on its stage's rank",
                                     s_.ranks, s_.stages, s_.microbatches, actions),
                         "problem");
  }

  // Range, route and placement of one task; true when the task can be counted.
  bool CheckTask(int r, int i, const Task& t) {
    auto where = [&] { return Where(s_, r, i); };
    if (t.stage < 0 || t.stage >= s_.stages) {
      found_.Add(
          fmt::format("{}: stage {} is out of range 0..{}", where(), t.stage, s_.stages - 1));
      return false;
    }
    if (t.microbatch < 0 || t.microbatch >= s_.microbatches) {
      found_.Add(fmt::format("{}: microbatch {} is out of range 0..{}", where(), t.microbatch,
                             s_.microbatches - 1));
      return false;
    }
    if (!routes_.OnRoute(t.stage, t.microbatch)) {
      found_.Add(fmt::format("{}: stage {} is not on microbatch {}'s route", where(), t.stage,
                             t.microbatch));
      return false;
    }
    if (s_.placement[t.stage] != r) {
      found_.Add(fmt::format("{}: stage {} is placed on rank {}, not rank {}", where(), t.stage,
                             s_.placement[t.stage], r));
      return false;
    }
    return true;
  }

  void CheckAction(int r, int i) {
    const Action& a = s_.program[r][i];
    for (int k = 0; k < a.TaskCount(); ++k) {
      const Task t = a.TaskAt(k);
      if (!CheckTask(r, i, t)) continue;
      if (IsComm(t.op)) {
        CheckMessage(r, i, t);
      } else {
        counts_[static_cast<size_t>(t.stage) * s_.microbatches + t.microbatch].Count(t.op);
      }
    }
  }

  // A SEND/RECV must have a neighbour on its route in its direction, on another rank.
  void CheckMessage(int r, int i, const Task& t) {
    std::optional<Message> m = MessageOf(s_, routes_, t);
    if (!m) {
      const bool towards_next = t.op == Op::kSendF || t.op == Op::kRecvB;
      found_.Add(
          fmt::format("{}: stage {} is the {} stage of microbatch {}'s route, so there is "
                      "nothing to {}",
                      Where(s_, r, i), t.stage, towards_next ? "last" : "first", t.microbatch,
                      IsSend(t.op) ? "send" : "receive"));
    } else if (m->peer == r) {
      found_.Add(
          fmt::format("{}: {} stays on rank {} (both stages are placed there), so it "
                      "needs no message",
                      Where(s_, r, i), ToString(m->payload), r));
    }
  }

  void CheckCounts() {
    for (int m = 0; m < s_.microbatches; ++m) {
      for (int st : s_.routes[m]) {
        const TaskCounts& c = counts_[static_cast<size_t>(st) * s_.microbatches + m];
        if (!c.Complete()) found_.Add(DescribeCounts(st, m, c));
      }
    }
  }

  const Schedule& s_;
  RouteIndex routes_;
  std::vector<TaskCounts> counts_;
  Findings found_;
};

}  // namespace

CheckResult CheckStructure(const Schedule& schedule) { return StructureCheck(schedule).Run(); }

}  // namespace pipeproof::verify_internal
