#include "schedule/lower.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <tuple>
#include <unordered_map>

namespace pipeproof {
namespace {

struct PassKeyHash {
  size_t operator()(const PassKey& k) const {
    return (static_cast<size_t>(k.stage) * 1000003u + static_cast<size_t>(k.microbatch)) * 3u +
           static_cast<size_t>(k.pass);
  }
};

// Any positive costs give a valid lowering; these keep B the heaviest, as on real hardware. A
// data-parallel action (UNSHARD, REDUCE_GRAD, ...) takes no time, so it keeps its place right
// after the compute before it.
int64_t DataflowCost(const Action& a) {
  switch (a.op) {
    case Op::kBackward: return 2;
    case Op::kOverlapFB: return 3;
    default: return IsCompute(a.op) ? 1 : 0;
  }
}

struct Produced {
  int64_t finish = 0;
  int rank = 0;
  int index = 0;
};

// Runs the compute order as pure dataflow: each rank takes its next compute once every pass
// it needs has been produced somewhere. Records when each pass is ready.
class DataflowRun {
 public:
  DataflowRun(const Schedule& s, const RouteIndex& routes) : s_(s), routes_(routes) {
    next_.assign(s.ranks, 0);
    clock_.assign(s.ranks, 0);
    finish_.resize(s.ranks);
    for (int r = 0; r < s.ranks; ++r) finish_[r].resize(s.program[r].size());
  }

  void Run() {
    std::vector<int> ready;
    for (int r = 0; r < s_.ranks; ++r) ready.push_back(r);
    while (!ready.empty()) {
      int r = ready.back();
      ready.pop_back();
      while (next_[r] < static_cast<int>(s_.program[r].size())) {
        const Action& a = s_.program[r][next_[r]];
        std::optional<PassKey> missing;
        int64_t start = clock_[r];
        for (int t = 0; t < a.TaskCount() && !missing; ++t) {
          for (const PassKey& need : Needs(a.TaskAt(t), routes_)) {
            auto it = produced_.find(need);
            if (it == produced_.end()) {
              missing = need;
              break;
            }
            start = std::max(start, it->second.finish);
          }
        }
        if (missing) {
          waiting_[*missing].push_back(r);
          break;
        }
        clock_[r] = finish_[r][next_[r]] = start + DataflowCost(a);
        for (int t = 0; t < a.TaskCount(); ++t) {
          for (const PassKey& key : Produces(a.TaskAt(t))) {
            produced_.emplace(key, Produced{clock_[r], r, next_[r]});
            if (auto w = waiting_.find(key); w != waiting_.end()) {
              ready.insert(ready.end(), w->second.begin(), w->second.end());
              waiting_.erase(w);
            }
          }
        }
        ++next_[r];
      }
    }
  }

  bool Complete() const {
    for (int r = 0; r < s_.ranks; ++r) {
      if (next_[r] < static_cast<int>(s_.program[r].size())) return false;
    }
    return true;
  }

  // Each stuck rank, its next compute, and the pass it waits for.
  std::string Explain() const {
    std::map<PassKey, std::pair<int, int>, bool (*)(const PassKey&, const PassKey&)> where(
        [](const PassKey& a, const PassKey& b) {
          return std::tie(a.pass, a.stage, a.microbatch) < std::tie(b.pass, b.stage, b.microbatch);
        });
    for (int r = 0; r < s_.ranks; ++r) {
      for (int i = 0; i < static_cast<int>(s_.program[r].size()); ++i) {
        const Action& a = s_.program[r][i];
        for (int t = 0; t < a.TaskCount(); ++t) {
          for (const PassKey& key : Produces(a.TaskAt(t))) where.emplace(key, std::pair{r, i});
        }
      }
    }
    std::string out =
        "the compute order cannot run to its end whatever the communication, so no placement of "
        "SEND/RECV avoids a deadlock:";
    for (const auto& [key, ranks] : waiting_) {
      for (int r : ranks) {
        const int i = next_[r];
        out += fmt::format("\n  rank {} [{}] {} waits for {}", r, i, ToString(s_.program[r][i]),
                           ToString(key));
        if (auto it = where.find(key); it != where.end()) {
          auto [pr, pi] = it->second;
          out += fmt::format(", which rank {} computes at [{}] {}, behind its own wait", pr, pi,
                             ToString(s_.program[pr][pi]));
        } else {
          out += ", which no rank computes";
        }
      }
    }
    return out;
  }

  const Produced& ProducerOf(const PassKey& key) const { return produced_.at(key); }
  int64_t FinishOf(int rank, int index) const { return finish_[rank][index]; }

 private:
  const Schedule& s_;
  const RouteIndex& routes_;
  std::vector<int> next_;
  std::vector<int64_t> clock_;
  std::vector<std::vector<int64_t>> finish_;
  std::unordered_map<PassKey, Produced, PassKeyHash> produced_;
  std::unordered_map<PassKey, std::vector<int>, PassKeyHash> waiting_;
};

// Where an action goes in a rank's lowered program. Computes keep their order (their finish
// times increase along a rank); a message's SEND and RECV both sort by the same key, the time
// its payload is ready and then who made it, so every rank meets its messages in one global
// order.
struct Placed {
  int64_t time;
  int is_comm;  // at equal times a compute that finishes then comes before the messages
  int producer_rank, producer_index, payload_kind, consumer_stage;
  Action action;
  auto Key() const {
    return std::tie(time, is_comm, producer_rank, producer_index, payload_kind, consumer_stage);
  }
};

}  // namespace

bool HasComm(const Schedule& schedule) {
  for (const auto& actions : schedule.program) {
    for (const Action& a : actions) {
      if (!IsCompute(a.op) && !IsDataParallel(a.op)) return true;
    }
  }
  return false;
}

LoweringResult Lower(const Schedule& compute_only) {
  if (HasComm(compute_only)) {
    throw InputError("the schedule already has SEND/RECV/WAIT/WAIT_SEND actions; only a "
                     "compute-only schedule can be lowered");
  }
  RouteIndex routes(compute_only);
  DataflowRun run(compute_only, routes);
  run.Run();
  if (!run.Complete()) return {std::nullopt, run.Explain()};

  std::vector<std::vector<Placed>> placed(compute_only.ranks);
  for (int r = 0; r < compute_only.ranks; ++r) {
    for (int i = 0; i < static_cast<int>(compute_only.program[r].size()); ++i) {
      const Action& a = compute_only.program[r][i];
      placed[r].push_back({run.FinishOf(r, i), 0, r, i, 0, 0, a});
      for (int t = 0; t < a.TaskCount(); ++t) {
        const Task consumer = a.TaskAt(t);
        for (const PassKey& need : Needs(consumer, routes)) {
          const int from_rank = compute_only.placement[need.stage];
          if (from_rank == r) continue;  // made on this rank: no message
          const Produced& p = run.ProducerOf(need);
          const bool activation = need.pass == Pass::kForward;
          const int kind = activation ? 0 : 1;
          Action send = Action::Comm(activation ? Op::kSendF : Op::kSendB, need.stage,
                                     need.microbatch);
          Action recv = Action::Comm(activation ? Op::kRecvF : Op::kRecvB, consumer.stage,
                                     consumer.microbatch);
          placed[from_rank].push_back({p.finish, 1, p.rank, p.index, kind, consumer.stage, send});
          placed[r].push_back({p.finish, 1, p.rank, p.index, kind, consumer.stage, recv});
        }
      }
    }
  }
  Schedule lowered = compute_only;
  for (int r = 0; r < compute_only.ranks; ++r) {
    std::stable_sort(placed[r].begin(), placed[r].end(),
                     [](const Placed& a, const Placed& b) { return a.Key() < b.Key(); });
    lowered.program[r].clear();
    for (const Placed& p : placed[r]) lowered.program[r].push_back(p.action);
  }
  return {std::move(lowered), ""};
}

Schedule AddWaitSends(const Schedule& schedule) {
  Schedule out = schedule;
  for (auto& program : out.program) {
    if (std::any_of(program.begin(), program.end(),
                    [](const Action& a) { return a.op == Op::kWait || IsWaitSend(a.op); })) {
      continue;
    }
    std::vector<Action> with_waits;
    std::vector<Action> pending;  // SENDs not waited for yet, in their order
    for (const Action& a : program) {
      with_waits.push_back(a);
      if (IsSend(a.op)) pending.push_back(a);
      for (int t = 0; t < a.TaskCount(); ++t) {
        const Task task = a.TaskAt(t);
        if (task.op != Op::kBackward && task.op != Op::kInputGrad) continue;
        auto sent = std::find(pending.begin(), pending.end(),
                              Action::Comm(Op::kSendF, task.stage, task.microbatch));
        if (sent == pending.end()) continue;
        with_waits.push_back(Action::WaitSend(Op::kSendF, task.stage, task.microbatch));
        pending.erase(sent);
      }
    }
    for (const Action& send : pending) {
      with_waits.push_back(Action::WaitSend(send.op, send.stage, send.microbatch));
    }
    program = std::move(with_waits);
  }
  return out;
}

Schedule LowerIfComputeOnly(Schedule schedule, std::string* name) {
  if (HasComm(schedule)) return schedule;
  LoweringResult lowered = Lower(schedule);
  if (!lowered.schedule) {
    throw InputError("the compute-only schedule cannot be lowered: " + lowered.problem);
  }
  if (name) *name += ", SEND/RECV inserted by lowering";
  return std::move(*lowered.schedule);
}

}  // namespace pipeproof
