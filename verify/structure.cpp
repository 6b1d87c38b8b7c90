// structure: shape, counts and placement. Everything the later checks take for granted.

#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>

#include "verify/internal.h"

namespace pipeproof::verify_internal {
namespace {

// How often each task of one (stage, microbatch) occurs, and where the first one stands.
struct TaskCounts {
  uint8_t f = 0, b = 0, i = 0, w = 0;
  int32_t rank = -1, index = -1;
  void Count(Op op, int at_rank, int at_index) {
    if (rank < 0) {
      rank = at_rank;
      index = at_index;
    }
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
  // Exactly one F, and either one B alone or one I with one W; a forward-only pass: no backward.
  bool Complete(bool forward_only) const {
    if (forward_only) return f == 1 && b == 0 && i == 0 && w == 0;
    return f == 1 && ((b == 1 && i == 0 && w == 0) || (b == 0 && i == 1 && w == 1));
  }
};

std::string DescribeCounts(const Schedule& s, int stage, int mb, const TaskCounts& c) {
  if (c.rank < 0) {
    return fmt::format("stage {} microbatch {}: no task at all (the schedule has microbatches "
                       "0..{}; a file without a header counts them from the largest it names, "
                       "give --microbatches otherwise)",
                       stage, mb, s.microbatches - 1);
  }
  std::vector<std::string> problems;
  if (c.f != 1) problems.push_back(fmt::format("{} F", c.f));
  if (s.forward_only) {
    if (c.b + c.i + c.w > 0) problems.push_back("a backward (B, I or W)");
    return fmt::format("stage {} microbatch {}: {} (a forward-only pass ('pass forward') needs exactly one F "
                       "and no backward); its first task is {}",
                       stage, mb, fmt::join(problems, ", "), Where(s, c.rank, c.index));
  }
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
      "one W); its first task is {}",
      stage, mb, fmt::join(problems, ", "), Where(s, c.rank, c.index));
}

// The order rules of PyTorch's runtime actions on one rank: a WAIT_SEND waits for a SEND written
// before it, once; a stage computes only while its parameters are gathered (between UNSHARD and
// RESHARD, where the rank writes them) and not after its REDUCE_GRAD; each REDUCE_GRAD is waited
// for (WAIT_REDUCE_GRAD) before the next, as PyTorch's runtime requires.
// Where a rank or the schedule has none of these actions, nothing is tracked: most schedules
// then pay nothing for the rules.
class RuntimeOrder {
 public:
  // `has_unshard[stage]`: the stage's rank writes an UNSHARD for it, so it starts sharded.
  // `data_parallel`: the schedule has data-parallel actions at all.
  RuntimeOrder(const Schedule& s, int rank, const std::vector<bool>& has_unshard,
               bool data_parallel, Findings& found)
      : s_(s),
        rank_(rank),
        found_(found),
        has_unshard_(has_unshard),
        watch_stages_(data_parallel),
        watch_sends_(std::any_of(s.program[rank].begin(), s.program[rank].end(),
                                 [](const Action& a) { return IsWaitSend(a.op); })) {}

  void Send(const Action& a) {
    if (watch_sends_) ++sends_[SendKey(a.op, a.stage, a.microbatch)].unwaited;
  }

  void WaitSend(int i, const Action& a) {
    SendState& state = sends_[SendKey(SentBy(a.op), a.stage, a.microbatch)];
    const std::string send = ToString(Action::Comm(SentBy(a.op), a.stage, a.microbatch));
    if (state.unwaited > 0) {
      --state.unwaited;
      state.last_wait = i;
    } else if (state.last_wait >= 0) {
      found_.Add(fmt::format("{}: a second wait for {} (the first is at [{}])",
                             Where(s_, rank_, i), send, state.last_wait));
    } else {
      found_.Add(fmt::format("{}: waits for {}, which rank {} does not write before it",
                             Where(s_, rank_, i), send, rank_));
    }
  }

  void Compute(int i, int stage) {
    if (!watch_stages_) return;
    const StageState& st = State(stage);
    if (!st.gathered) {
      found_.Add(st.resharded_at >= 0
                     ? fmt::format("{}: computes on stage {} after its RESHARD at [{}] and "
                                   "before another UNSHARD",
                                   Where(s_, rank_, i), stage, st.resharded_at)
                     : fmt::format("{}: computes on stage {} before its UNSHARD",
                                   Where(s_, rank_, i), stage));
    }
    if (st.reduced_at >= 0) {
      found_.Add(fmt::format("{}: computes on stage {} after its REDUCE_GRAD at [{}], which "
                             "must follow the stage's last compute",
                             Where(s_, rank_, i), stage, st.reduced_at));
    }
  }

  void DataParallel(int i, const Action& a) {
    StageState& st = State(a.stage);
    switch (a.op) {
      case Op::kUnshard:
        if (st.gathered && st.unsharded_at >= 0) {
          found_.Add(fmt::format("{}: stage {}'s parameters are already gathered by the UNSHARD "
                                 "at [{}]",
                                 Where(s_, rank_, i), a.stage, st.unsharded_at));
        }
        st.gathered = true;
        st.unsharded_at = i;
        break;
      case Op::kReshard:
        if (!st.gathered) {
          found_.Add(fmt::format("{}: stage {}'s parameters are not gathered here",
                                 Where(s_, rank_, i), a.stage));
        }
        st.gathered = false;
        st.resharded_at = i;
        break;
      case Op::kReduceGrad:
        if (st.reduced_at >= 0) {
          found_.Add(fmt::format("{}: a second REDUCE_GRAD of stage {} (the first is at [{}])",
                                 Where(s_, rank_, i), a.stage, st.reduced_at));
        } else if (pending_reduction_ >= 0) {
          found_.Add(fmt::format("{}: the reduction at [{}] is not waited for yet, and PyTorch's "
                                 "runtime keeps at most one pending per rank",
                                 Where(s_, rank_, i), pending_reduction_));
        }
        st.reduced_at = i;
        pending_reduction_ = i;
        break;
      case Op::kWaitReduceGrad:
        if (pending_reduction_ < 0 || s_.program[rank_][pending_reduction_].stage != a.stage) {
          found_.Add(fmt::format("{}: no REDUCE_GRAD of stage {} is pending here",
                                 Where(s_, rank_, i), a.stage));
        } else {
          pending_reduction_ = -1;
        }
        break;
      default:
        break;
    }
  }

  void End() {
    if (pending_reduction_ >= 0) {
      found_.Add(fmt::format("{}: never waited for (no WAIT_REDUCE_GRAD of the stage after it)",
                             Where(s_, rank_, pending_reduction_)));
    }
  }

 private:
  struct StageState {
    bool gathered = true;
    int unsharded_at = -1, resharded_at = -1, reduced_at = -1;
  };
  struct SendState {
    int unwaited = 0;    // SENDs so far that no WAIT_SEND took yet
    int last_wait = -1;  // where the last WAIT_SEND for them stands
  };
  int64_t SendKey(Op send, int stage, int microbatch) const {
    return (int64_t{stage} * s_.microbatches + microbatch) * 2 + (send == Op::kSendB ? 1 : 0);
  }
  StageState& State(int stage) {
    auto [it, inserted] = stages_.try_emplace(stage);
    if (inserted) it->second.gathered = !has_unshard_[stage];
    return it->second;
  }

  const Schedule& s_;
  const int rank_;
  Findings& found_;
  const std::vector<bool>& has_unshard_;
  const bool watch_stages_;
  const bool watch_sends_;
  std::unordered_map<int64_t, SendState> sends_;
  std::unordered_map<int, StageState> stages_;
  int pending_reduction_ = -1;
};

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
    const std::vector<bool> has_unshard = StagesWithUnshard();
    bool data_parallel = false;
    for (const auto& program : s_.program) {
      for (const Action& a : program) data_parallel = data_parallel || IsDataParallel(a.op);
    }
    for (int r = 0; r < s_.ranks; ++r) {
      RuntimeOrder order(s_, r, has_unshard, data_parallel, found_);
      for (int i = 0; i < static_cast<int>(s_.program[r].size()); ++i) CheckAction(r, i, order);
      order.End();
    }
    CheckCounts();
    return Result();
  }

 private:
  CheckResult Result() const {
    int64_t actions = s_.ActionCount();
    return found_.Result("structure",
                         fmt::format("{} ranks, {} stages, {} microbatches, {} actions{}; every "
                                     "task once, every action on its stage's rank",
                                     s_.ranks, s_.stages, s_.microbatches, actions,
                                     s_.forward_only ? ", forward only" : ""),
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

  // The stages whose rank writes an UNSHARD for them (one on another rank is a placement error).
  std::vector<bool> StagesWithUnshard() const {
    std::vector<bool> has(s_.stages, false);
    for (int r = 0; r < s_.ranks; ++r) {
      for (const Action& a : s_.program[r]) {
        if (a.op == Op::kUnshard && a.stage >= 0 && a.stage < s_.stages &&
            s_.placement[a.stage] == r) {
          has[a.stage] = true;
        }
      }
    }
    return has;
  }

  void CheckAction(int r, int i, RuntimeOrder& order) {
    const Action& a = s_.program[r][i];
    if (IsDataParallel(a.op)) {
      if (CheckStageOf(r, i, a.stage)) order.DataParallel(i, a);
      return;
    }
    for (int k = 0; k < a.TaskCount(); ++k) {
      const Task t = a.TaskAt(k);
      if (!CheckTask(r, i, t)) continue;
      if (IsComm(t.op)) {
        CheckMessage(r, i, t);
        if (IsSend(t.op)) order.Send(a);
      } else if (IsWaitSend(t.op)) {
        order.WaitSend(i, a);
      } else {
        counts_[static_cast<size_t>(t.stage) * s_.microbatches + t.microbatch].Count(t.op, r, i);
        order.Compute(i, t.stage);
      }
    }
  }

  // A data-parallel action names a stage of its rank, and no microbatch.
  bool CheckStageOf(int r, int i, int stage) {
    if (stage < 0 || stage >= s_.stages) {
      found_.Add(fmt::format("{}: stage {} is out of range 0..{}", Where(s_, r, i), stage,
                             s_.stages - 1));
      return false;
    }
    if (s_.placement[stage] != r) {
      found_.Add(fmt::format("{}: stage {} is placed on rank {}, not rank {}", Where(s_, r, i),
                             stage, s_.placement[stage], r));
      return false;
    }
    return true;
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
        if (!c.Complete(s_.forward_only)) found_.Add(DescribeCounts(s_, st, m, c));
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
