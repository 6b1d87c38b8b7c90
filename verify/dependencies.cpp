// dependencies: every compute's inputs reach it in time, and every SEND sends something that
// exists. A remote input counts as arrived when a message that may carry it (its SEND or its
// RECV names it; whether the two agree is matching's question) was sent after the input was
// computed and has completed on the consumer's rank before the compute runs.

#include <fmt/format.h>

#include <algorithm>

#include "verify/internal.h"

namespace pipeproof::verify_internal {
namespace {

int64_t PassSlot(const Schedule& s, const PassKey& key) {
  return (static_cast<int64_t>(key.pass) * s.stages + key.stage) * s.microbatches + key.microbatch;
}

// Per position on one rank: the position of the last WAIT before it, -1 if none.
std::vector<int32_t> LastWaitBefore(const std::vector<Action>& program) {
  std::vector<int32_t> last(program.size(), -1);
  int32_t wait = -1;
  for (size_t i = 0; i < program.size(); ++i) {
    last[i] = wait;
    if (program[i].op == Op::kWait) wait = static_cast<int32_t>(i);
  }
  return last;
}

// The first WAIT at or after `index`, -1 if none.
int FirstWaitFrom(const std::vector<Action>& program, int index) {
  for (int i = index; i < static_cast<int>(program.size()); ++i) {
    if (program[i].op == Op::kWait) return i;
  }
  return -1;
}

class DependencyCheck {
 public:
  DependencyCheck(const Schedule& s, const RouteIndex& routes, const Messages& messages,
                  const ReceiveIndex& receives, bool local_only)
      : s_(s),
        routes_(routes),
        messages_(messages),
        local_only_(local_only),
        passes_(s),
        receives_(receives) {}

  CheckResult Run() {
    for (int q = 0; q < s_.ranks; ++q) {
      const auto& program = s_.program[q];
      grouped_ = UsesWaitGroups(program);
      last_wait_ = LastWaitBefore(program);
      for (int i = 0; i < static_cast<int>(program.size()); ++i) {
        const Action& a = program[i];
        if (IsCompute(a.op)) {
          for (int k = 0; k < a.TaskCount(); ++k) CheckInputs(q, i, a.TaskAt(k));
        } else if (IsSend(a.op) && messages_.peer[q][i] >= 0) {
          CheckSend(q, i);
        }
      }
    }
    return found_.Result("dependencies",
                         "every input is computed, sent and received before the compute that "
                         "needs it",
                         "problem");
  }

 private:
  void CheckInputs(int q, int i, const Task& consumer) {
    for (const PassKey& need : Needs(consumer, routes_)) {
      if (s_.placement[need.stage] == q) {
        CheckLocal(q, i, need);
      } else if (!local_only_) {
        CheckRemote(q, i, need, consumer);
      }
    }
  }

  void CheckLocal(int q, int i, const PassKey& need) {
    const int made = passes_.Producer(need);
    if (made >= 0 && made < i) return;
    found_.Add(made < 0 ? fmt::format("{} needs {}, which rank {} never computes", Where(s_, q, i),
                                      ToString(need), q)
               : made == i ? fmt::format("{} needs {}, which it computes itself", Where(s_, q, i),
                                         ToString(need))
                           : fmt::format("{} needs {}, which is computed later, at {}",
                                         Where(s_, q, i), ToString(need), Where(s_, q, made)));
  }

  // Completed before position i: past a WAIT (with groups), or waited for (without).
  bool CompletedBefore(int recv, int i) const { return grouped_ ? recv < last_wait_[i] : recv < i; }

  void CheckRemote(int q, int i, const PassKey& need, const Task& consumer) {
    const Payload payload = NeededPayload(need, consumer);
    const int made = passes_.Producer(need);
    bool arrived = false;
    int late_recv = -1, early_send_recv = -1;
    receives_.ForEach(payload, [&](int32_t recv) {
      const Endpoint send = messages_.partner[q][recv];
      if (!CompletedBefore(recv, i)) {
        late_recv = std::max(late_recv, static_cast<int>(recv));
      } else if (!send.valid() || made < 0 || send.index < made) {
        early_send_recv = recv;
      } else {
        arrived = true;
      }
    });
    if (arrived) return;
    const std::string what = fmt::format("{} needs {} from rank {}", Where(s_, q, i),
                                         ToString(payload), s_.placement[need.stage]);
    if (early_send_recv >= 0) {
      const Endpoint send = messages_.partner[q][early_send_recv];
      found_.Add(!send.valid()
                     ? fmt::format("{}, but {} that should bring it meets no SEND", what,
                                   Where(s_, q, early_send_recv))
                     : fmt::format("{}, but the message that brings it is sent at {}, before {} "
                                   "is computed{}",
                                   what, Where(s_, send.rank, send.index), ToString(need),
                                   made >= 0 ? " at " + Where(s_, send.rank, made) : ""));
    } else if (late_recv < 0) {
      found_.Add(fmt::format("{}, but no RECV on rank {} receives it", what, q));
    } else if (late_recv > i) {
      found_.Add(fmt::format("{}, but {} comes after it", what, Where(s_, q, late_recv)));
    } else {
      const int wait = FirstWaitFrom(s_.program[q], late_recv);
      found_.Add(wait < 0 ? fmt::format("{}, but no WAIT completes {} (it is after the rank's "
                                        "last WAIT)",
                                        what, Where(s_, q, late_recv))
                          : fmt::format("{}, but {} completes only at the WAIT at [{}], after it",
                                        what, Where(s_, q, late_recv), wait));
    }
  }

  // What a SEND names must be computed before it: the SEND reads that buffer, whatever the RECV
  // it meets expects (a mix-up is matching's finding, on top of this one).
  void CheckSend(int p, int i) {
    const Payload& own = messages_.payload[p][i];
    const int made = passes_.Producer(SentPass(own));
    if (made >= 0 && made < i) return;
    found_.Add(made < 0 ? fmt::format("{} sends {}, which rank {} never computes", Where(s_, p, i),
                                      ToString(own), p)
                        : fmt::format("{} sends {} before it is computed, at {}", Where(s_, p, i),
                                      ToString(own), Where(s_, p, made)));
  }

  const Schedule& s_;
  const RouteIndex& routes_;
  const Messages& messages_;
  bool local_only_;
  PassTable passes_;
  const ReceiveIndex& receives_;
  bool grouped_ = false;
  std::vector<int32_t> last_wait_;
  Findings found_;
};

}  // namespace

bool UsesWaitGroups(const std::vector<Action>& program) {
  return std::any_of(program.begin(), program.end(),
                     [](const Action& a) { return a.op == Op::kWait; });
}

std::vector<std::vector<int32_t>> WaitedSends(const Schedule& s) {
  std::vector<std::vector<int32_t>> out(s.ranks);
  for (int r = 0; r < s.ranks; ++r) {
    const auto& program = s.program[r];
    if (std::none_of(program.begin(), program.end(),
                     [](const Action& a) { return IsWaitSend(a.op); })) {
      continue;
    }
    const std::vector<int> waited = WaitedSendPositions(program);
    out[r].assign(waited.begin(), waited.end());
  }
  return out;
}

PassTable::PassTable(const Schedule& s)
    : s_(s), index_(3 * int64_t{s.stages} * s.microbatches, -1) {
  for (int r = 0; r < s.ranks; ++r) {
    for (int i = 0; i < static_cast<int>(s.program[r].size()); ++i) {
      const Action& a = s.program[r][i];
      if (!IsCompute(a.op)) continue;
      for (int k = 0; k < a.TaskCount(); ++k) {
        for (const PassKey& key : Produces(a.TaskAt(k))) {
          int32_t& slot = index_[PassSlot(s, key)];
          if (slot < 0 && s.placement[key.stage] == r) slot = i;
        }
      }
    }
  }
}

int PassTable::Producer(const PassKey& key) const { return index_[PassSlot(s_, key)]; }

CheckResult CheckDependencies(const Schedule& schedule, const RouteIndex& routes,
                              const Messages& messages, bool local_only) {
  return CheckDependencies(schedule, routes, messages, ReceiveIndex(schedule, messages), local_only);
}

CheckResult CheckDependencies(const Schedule& schedule, const RouteIndex& routes,
                              const Messages& messages, const ReceiveIndex& receives,
                              bool local_only) {
  return DependencyCheck(schedule, routes, messages, receives, local_only).Run();
}

void InputReceives(const Schedule& s, const RouteIndex& routes, const ReceiveIndex& receives,
                   int rank, int index, std::vector<int32_t>& out) {
  out.clear();
  const Action& a = s.program[rank][index];
  for (int k = 0; k < a.TaskCount(); ++k) {
    const Task consumer = a.TaskAt(k);
    for (const PassKey& need : Needs(consumer, routes)) {
      if (s.placement[need.stage] == rank) continue;
      // The RECV written for this input, as PyTorch's runtime waits for it (its recv ops are
      // kept by the stage and microbatch the RECV names), whatever its partner really sends.
      const Action named = Action::Comm(need.pass == Pass::kForward ? Op::kRecvF : Op::kRecvB,
                                        consumer.stage, consumer.microbatch);
      receives.ForEach(NeededPayload(need, consumer), [&](int32_t recv) {
        if (recv < index && s.program[rank][recv] == named) out.push_back(recv);
      });
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
}

}  // namespace pipeproof::verify_internal
