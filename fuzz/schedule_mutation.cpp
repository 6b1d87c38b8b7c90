#include "fuzz/schedule_mutation.h"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <random>

namespace pipeproof {
namespace {

using Rng = std::mt19937_64;

int Below(Rng& rng, int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); }

// A place in a program: rank and index.
struct Place {
  int rank = -1;
  int index = -1;
};

// A uniformly drawn action that satisfies `fits`, or rank -1 when none does.
Place Pick(const Schedule& s, Rng& rng, const std::function<bool(const Action&)>& fits) {
  std::vector<Place> all;
  for (int r = 0; r < s.ranks; ++r) {
    for (int i = 0; i < static_cast<int>(s.program[r].size()); ++i) {
      if (fits(s.program[r][i])) all.push_back({r, i});
    }
  }
  if (all.empty()) return {};
  return all[Below(rng, static_cast<int>(all.size()))];
}

bool IsWait(const Action& a) { return a.op == Op::kWait; }

std::string Where(const Schedule& s, Place p) {
  return fmt::format("rank {} [{}] {}", p.rank, p.index, ToString(s.program[p.rank][p.index]));
}

std::string DropOne(Schedule& s, Rng& rng, const std::function<bool(const Action&)>& fits) {
  const Place p = Pick(s, rng, fits);
  if (p.rank < 0) return "";
  const std::string what = "dropped " + Where(s, p);
  s.program[p.rank].erase(s.program[p.rank].begin() + p.index);
  return what;
}

std::string DuplicateOne(Schedule& s, Rng& rng, const std::function<bool(const Action&)>& fits) {
  const Place p = Pick(s, rng, fits);
  if (p.rank < 0) return "";
  std::vector<Action>& program = s.program[p.rank];
  const int at = Below(rng, static_cast<int>(program.size()) + 1);
  const Action copy = program[p.index];
  program.insert(program.begin() + at, copy);
  return fmt::format("{} written again at [{}]", Where(s, p), at);
}

std::string Swap(Schedule& s, Rng& rng, bool adjacent) {
  std::vector<int> ranks;
  for (int r = 0; r < s.ranks; ++r) {
    if (s.program[r].size() >= 2) ranks.push_back(r);
  }
  if (ranks.empty()) return "";
  const int r = ranks[Below(rng, static_cast<int>(ranks.size()))];
  std::vector<Action>& program = s.program[r];
  const int n = static_cast<int>(program.size());
  const int i = Below(rng, adjacent ? n - 1 : n);
  int j = adjacent ? i + 1 : Below(rng, n - 1);
  if (!adjacent && j >= i) ++j;
  if (program[i] == program[j]) return "";
  std::swap(program[i], program[j]);
  return fmt::format("rank {}: swapped [{}] and [{}]", r, std::min(i, j), std::max(i, j));
}

// The route neighbour of `stage` for microbatch m in direction dir, or -1.
int Neighbour(const Schedule& s, int stage, int m, int dir) {
  const std::vector<int>& route = s.routes[m];
  const auto it = std::find(route.begin(), route.end(), stage);
  if (it == route.end()) return -1;
  const int at = static_cast<int>(it - route.begin()) + dir;
  return at < 0 || at >= static_cast<int>(route.size()) ? -1 : route[at];
}

// A SEND (or RECV) names another microbatch that passes the same stage with the same neighbour,
// so that the message still goes to the same rank: the FIFO partner then disagrees.
std::string ChangeMicrobatch(Schedule& s, Rng& rng, bool send) {
  const Place p = Pick(s, rng, [&](const Action& a) { return send ? IsSend(a.op) : IsRecv(a.op); });
  if (p.rank < 0) return "";
  Action& a = s.program[p.rank][p.index];
  const int dir = (a.op == Op::kSendF || a.op == Op::kRecvB) ? +1 : -1;
  const int neighbour = Neighbour(s, a.stage, a.microbatch, dir);
  std::vector<int> others;
  for (int m = 0; m < s.microbatches; ++m) {
    if (m != a.microbatch && neighbour >= 0 && Neighbour(s, a.stage, m, dir) == neighbour) others.push_back(m);
  }
  if (others.empty()) return "";
  const std::string before = Where(s, p);
  a.microbatch = others[Below(rng, static_cast<int>(others.size()))];
  return fmt::format("{} now names microbatch {}", before, a.microbatch);
}

std::string CommAcrossWait(Schedule& s, Rng& rng) {
  // A SEND/RECV with a WAIT somewhere after it (moved just past the first such WAIT) or before
  // it (moved just before the last such WAIT).
  const Place p = Pick(s, rng, [](const Action& a) { return IsComm(a.op); });
  if (p.rank < 0) return "";
  std::vector<Action>& program = s.program[p.rank];
  const int n = static_cast<int>(program.size());
  int after = -1, before = -1;
  for (int k = p.index + 1; k < n && after < 0; ++k) {
    if (IsWait(program[k])) after = k;
  }
  for (int k = p.index - 1; k >= 0 && before < 0; --k) {
    if (IsWait(program[k])) before = k;
  }
  if (after < 0 && before < 0) return "";
  const bool forward = before < 0 || (after >= 0 && Below(rng, 2) == 0);
  const std::string what = Where(s, p);
  const Action moved = program[p.index];
  program.erase(program.begin() + p.index);
  // Forward: after the WAIT that sat at `after` (now at after - 1). Back: before the WAIT at
  // `before`.
  const int at = forward ? after : before;
  program.insert(program.begin() + at, moved);
  return fmt::format("{} moved {} the WAIT at [{}]", what, forward ? "past" : "before", forward ? after : before);
}

std::string MoveWait(Schedule& s, Rng& rng) {
  const Place p = Pick(s, rng, IsWait);
  if (p.rank < 0) return "";
  std::vector<Action>& program = s.program[p.rank];
  program.erase(program.begin() + p.index);
  const int at = Below(rng, static_cast<int>(program.size()) + 1);
  if (at == p.index) {
    program.insert(program.begin() + p.index, Action::Wait());
    return "";
  }
  program.insert(program.begin() + at, Action::Wait());
  return fmt::format("rank {}: the WAIT at [{}] moved to [{}]", p.rank, p.index, at);
}

std::string ReverseGroup(Schedule& s, Rng& rng) {
  // Runs of two or more SEND/RECVs with no other action between them.
  std::vector<std::pair<Place, int>> runs;  // start, length
  for (int r = 0; r < s.ranks; ++r) {
    const std::vector<Action>& program = s.program[r];
    for (int i = 0; i < static_cast<int>(program.size());) {
      int j = i;
      while (j < static_cast<int>(program.size()) && IsComm(program[j].op)) ++j;
      if (j - i >= 2) runs.push_back({{r, i}, j - i});
      i = std::max(j, i + 1);
    }
  }
  if (runs.empty()) return "";
  const auto [start, length] = runs[Below(rng, static_cast<int>(runs.size()))];
  std::vector<Action>& program = s.program[start.rank];
  std::reverse(program.begin() + start.index, program.begin() + start.index + length);
  return fmt::format("rank {}: the {} SEND/RECVs at [{}..{}] reversed", start.rank, length, start.index,
                     start.index + length - 1);
}

std::string SwapSendRecv(Schedule& s, Rng& rng) {
  const Place p = Pick(s, rng, [](const Action& a) { return IsSend(a.op); });
  if (p.rank < 0) return "";
  std::vector<Action>& program = s.program[p.rank];
  for (int j = p.index + 1; j < static_cast<int>(program.size()); ++j) {
    if (!IsRecv(program[j].op)) continue;
    std::swap(program[p.index], program[j]);
    return fmt::format("rank {}: the SEND at [{}] and the RECV at [{}] swapped", p.rank, p.index, j);
  }
  return "";
}

std::string WrongRank(Schedule& s, Rng& rng) {
  if (s.ranks < 2) return "";
  const Place p = Pick(s, rng, [](const Action& a) { return !IsWait(a); });
  if (p.rank < 0) return "";
  int to = Below(rng, s.ranks - 1);
  if (to >= p.rank) ++to;
  const std::string what = Where(s, p);
  const Action moved = s.program[p.rank][p.index];
  s.program[p.rank].erase(s.program[p.rank].begin() + p.index);
  std::vector<Action>& target = s.program[to];
  const int at = Below(rng, static_cast<int>(target.size()) + 1);
  target.insert(target.begin() + at, moved);
  return fmt::format("{} moved to rank {} [{}]", what, to, at);
}

std::string IWithoutW(Schedule& s, Rng& rng) {
  const Place p = Pick(s, rng, [](const Action& a) {
    return a.op == Op::kBackward || a.op == Op::kWeightGrad ||
           (a.op == Op::kOverlapFB && a.back.op == Op::kBackward);
  });
  if (p.rank < 0) return "";
  const std::string what = Where(s, p);
  Action& a = s.program[p.rank][p.index];
  if (a.op == Op::kWeightGrad) {
    s.program[p.rank].erase(s.program[p.rank].begin() + p.index);
    return "dropped " + what + ", leaving its I without a W";
  }
  if (a.op == Op::kBackward) {
    a.op = Op::kInputGrad;
  } else {
    a.back.op = Op::kInputGrad;
  }
  return what + " became an I with no W";
}

std::string StripWaits(Schedule& s, Rng& rng, bool all) {
  std::vector<int> ranks;
  for (int r = 0; r < s.ranks; ++r) {
    if (std::any_of(s.program[r].begin(), s.program[r].end(), IsWait)) ranks.push_back(r);
  }
  if (ranks.empty()) return "";
  if (!all) ranks = {ranks[Below(rng, static_cast<int>(ranks.size()))]};
  for (int r : ranks) std::erase_if(s.program[r], IsWait);
  return all ? "every WAIT removed" : fmt::format("rank {}: every WAIT removed", ranks.front());
}

std::string ShuffleRank(Schedule& s, Rng& rng) {
  std::vector<int> ranks;
  for (int r = 0; r < s.ranks; ++r) {
    if (s.program[r].size() >= 2) ranks.push_back(r);
  }
  if (ranks.empty()) return "";
  const int r = ranks[Below(rng, static_cast<int>(ranks.size()))];
  const std::vector<Action> before = s.program[r];
  std::shuffle(s.program[r].begin(), s.program[r].end(), rng);
  if (s.program[r] == before) return "";
  return fmt::format("rank {}: program shuffled", r);
}

bool IsWaitSendAction(const Action& a) { return IsWaitSend(a.op); }

// A WAIT_SEND moves: before the first SEND of its kind on its rank (the rule that a WAIT_SEND
// follows its SEND then always breaks), or to just after the SEND it waits for (which, on a rank
// with WAIT groups, is before the WAIT that posts that SEND).
std::string MoveWaitSend(Schedule& s, Rng& rng, bool before) {
  const Place p = Pick(s, rng, IsWaitSendAction);
  if (p.rank < 0) return "";
  std::vector<Action>& program = s.program[p.rank];
  const Action w = program[p.index];
  const Op send = SentBy(w.op);
  int to = -1;  // where it goes in the program without it
  if (before) {
    int first = -1;
    for (int j = 0; j < p.index && first < 0; ++j) {
      const Action& a = program[j];
      if (a.op == send && a.stage == w.stage && a.microbatch == w.microbatch) first = j;
    }
    if (first < 0) return "";
    to = Below(rng, first + 1);  // anywhere before that SEND
  } else {
    const int sent = WaitedSendPositions(program)[p.index];
    if (sent < 0 || sent + 1 == p.index) return "";
    to = sent + 1;
  }
  const std::string what = Where(s, p);
  program.erase(program.begin() + p.index);  // both places lie before it
  program.insert(program.begin() + to, w);
  return fmt::format("{} moved to [{}], {} its SEND", what, to, before ? "before" : "just after");
}

// A SEND on a rank with WAIT groups gets a WAIT_SEND somewhere between it and the WAIT that
// posts it: the rank then waits for a send that only its own next WAIT would post.
std::string WaitSendInGroup(Schedule& s, Rng& rng) {
  std::vector<Place> sends;  // SENDs with a WAIT after them
  for (int r = 0; r < s.ranks; ++r) {
    const std::vector<Action>& program = s.program[r];
    bool wait_after = false;
    for (int i = static_cast<int>(program.size()) - 1; i >= 0; --i) {
      wait_after = wait_after || IsWait(program[i]);
      if (wait_after && IsSend(program[i].op)) sends.push_back({r, i});
    }
  }
  if (sends.empty()) return "";
  const Place p = sends[Below(rng, static_cast<int>(sends.size()))];
  std::vector<Action>& program = s.program[p.rank];
  int wait = p.index + 1;
  while (!IsWait(program[wait])) ++wait;
  const int at = p.index + 1 + Below(rng, wait - p.index);
  const Action a = program[p.index];
  const std::string what = Where(s, p);
  program.insert(program.begin() + at, Action::WaitSend(a.op, a.stage, a.microbatch));
  return fmt::format("{} waited for at [{}], before the WAIT that posts it", what, at);
}

}  // namespace

int AddPyTorchWaitSends(Schedule& s) {
  int added = 0;
  for (std::vector<Action>& program : s.program) {
    if (std::any_of(program.begin(), program.end(),
                    [](const Action& a) { return IsWait(a) || IsWaitSendAction(a); })) {
      continue;
    }
    std::vector<Action> out;
    std::vector<Action> pending;  // SENDs not waited for yet, in order
    for (const Action& a : program) {
      out.push_back(a);
      if (IsSend(a.op)) pending.push_back(a);
      for (int k = 0; k < a.TaskCount(); ++k) {
        const Task t = a.TaskAt(k);
        if (t.op != Op::kBackward && t.op != Op::kInputGrad) continue;
        const auto it = std::find_if(pending.begin(), pending.end(), [&](const Action& send) {
          return send.op == Op::kSendF && send.stage == t.stage && send.microbatch == t.microbatch;
        });
        if (it == pending.end()) continue;
        out.push_back(Action::WaitSend(Op::kSendF, t.stage, t.microbatch));
        pending.erase(it);
        ++added;
      }
    }
    for (const Action& send : pending) {
      out.push_back(Action::WaitSend(send.op, send.stage, send.microbatch));
      ++added;
    }
    program = std::move(out);
  }
  return added;
}

const std::vector<MutationClass>& AllMutationClasses() {
  static const std::vector<MutationClass> all = {
      MutationClass::kDropCompute,        MutationClass::kDropComm,
      MutationClass::kDropWait,           MutationClass::kDuplicateCompute,
      MutationClass::kDuplicateComm,      MutationClass::kSwapAdjacent,
      MutationClass::kSwapAny,            MutationClass::kSendMicrobatch,
      MutationClass::kRecvMicrobatch,     MutationClass::kCommAcrossWait,
      MutationClass::kMoveWait,           MutationClass::kReverseGroup,
      MutationClass::kSwapSendRecv,       MutationClass::kWrongRank,
      MutationClass::kIWithoutW,          MutationClass::kStripWaits,
      MutationClass::kStripAllWaits,      MutationClass::kShuffleRank,
      MutationClass::kDropWaitSend,       MutationClass::kDuplicateWaitSend,
      MutationClass::kWaitSendBeforeSend, MutationClass::kWaitSendAfterSend,
      MutationClass::kWaitSendInGroup};
  return all;
}

std::string MutationClassName(MutationClass c) {
  switch (c) {
    case MutationClass::kDropCompute: return "drop-compute";
    case MutationClass::kDropComm: return "drop-comm";
    case MutationClass::kDropWait: return "drop-wait";
    case MutationClass::kDuplicateCompute: return "duplicate-compute";
    case MutationClass::kDuplicateComm: return "duplicate-comm";
    case MutationClass::kSwapAdjacent: return "swap-adjacent";
    case MutationClass::kSwapAny: return "swap-any";
    case MutationClass::kSendMicrobatch: return "send-microbatch";
    case MutationClass::kRecvMicrobatch: return "recv-microbatch";
    case MutationClass::kCommAcrossWait: return "comm-across-wait";
    case MutationClass::kMoveWait: return "move-wait";
    case MutationClass::kReverseGroup: return "reverse-group";
    case MutationClass::kSwapSendRecv: return "swap-send-recv";
    case MutationClass::kWrongRank: return "wrong-rank";
    case MutationClass::kIWithoutW: return "i-without-w";
    case MutationClass::kStripWaits: return "strip-waits";
    case MutationClass::kStripAllWaits: return "strip-all-waits";
    case MutationClass::kShuffleRank: return "shuffle-rank";
    case MutationClass::kDropWaitSend: return "drop-wait-send";
    case MutationClass::kDuplicateWaitSend: return "duplicate-wait-send";
    case MutationClass::kWaitSendBeforeSend: return "wait-send-before-send";
    case MutationClass::kWaitSendAfterSend: return "wait-send-after-send";
    case MutationClass::kWaitSendInGroup: return "wait-send-in-group";
  }
  return "?";
}

std::string Mutate(Schedule& s, MutationClass c, uint64_t seed) {
  Rng rng(seed);
  Schedule original = s;
  std::string what;
  switch (c) {
    case MutationClass::kDropCompute: what = DropOne(s, rng, [](const Action& a) { return IsCompute(a.op); }); break;
    case MutationClass::kDropComm: what = DropOne(s, rng, [](const Action& a) { return IsComm(a.op); }); break;
    case MutationClass::kDropWait: what = DropOne(s, rng, IsWait); break;
    case MutationClass::kDuplicateCompute:
      what = DuplicateOne(s, rng, [](const Action& a) { return IsCompute(a.op); });
      break;
    case MutationClass::kDuplicateComm:
      what = DuplicateOne(s, rng, [](const Action& a) { return IsComm(a.op); });
      break;
    case MutationClass::kSwapAdjacent: what = Swap(s, rng, true); break;
    case MutationClass::kSwapAny: what = Swap(s, rng, false); break;
    case MutationClass::kSendMicrobatch: what = ChangeMicrobatch(s, rng, true); break;
    case MutationClass::kRecvMicrobatch: what = ChangeMicrobatch(s, rng, false); break;
    case MutationClass::kCommAcrossWait: what = CommAcrossWait(s, rng); break;
    case MutationClass::kMoveWait: what = MoveWait(s, rng); break;
    case MutationClass::kReverseGroup: what = ReverseGroup(s, rng); break;
    case MutationClass::kSwapSendRecv: what = SwapSendRecv(s, rng); break;
    case MutationClass::kWrongRank: what = WrongRank(s, rng); break;
    case MutationClass::kIWithoutW: what = IWithoutW(s, rng); break;
    case MutationClass::kStripWaits: what = StripWaits(s, rng, false); break;
    case MutationClass::kStripAllWaits: what = StripWaits(s, rng, true); break;
    case MutationClass::kShuffleRank: what = ShuffleRank(s, rng); break;
    case MutationClass::kDropWaitSend: what = DropOne(s, rng, IsWaitSendAction); break;
    case MutationClass::kDuplicateWaitSend: what = DuplicateOne(s, rng, IsWaitSendAction); break;
    case MutationClass::kWaitSendBeforeSend: what = MoveWaitSend(s, rng, true); break;
    case MutationClass::kWaitSendAfterSend: what = MoveWaitSend(s, rng, false); break;
    case MutationClass::kWaitSendInGroup: what = WaitSendInGroup(s, rng); break;
  }
  if (what.empty()) s = std::move(original);
  return what;
}

std::string AlwaysFailingCheck(MutationClass c) {
  switch (c) {
    case MutationClass::kDropCompute:
    case MutationClass::kDuplicateCompute:
    case MutationClass::kWrongRank:
    case MutationClass::kIWithoutW:
    // A second wait for one SEND, or a wait with no SEND of its kind before it (PyTorch's runtime
    // refuses both: _validate_send_waits).
    case MutationClass::kDuplicateWaitSend:
    case MutationClass::kWaitSendBeforeSend:
      return "structure";
    case MutationClass::kDropComm:
    case MutationClass::kDuplicateComm:
    case MutationClass::kSendMicrobatch:
    case MutationClass::kRecvMicrobatch:
      return "matching";
    // The send waited for is posted only by a WAIT that the rank never reaches, whatever the
    // model and layout.
    case MutationClass::kWaitSendInGroup:
      return "deadlock";
    default:
      return "";
  }
}

bool NeedsWaitSends(MutationClass c) {
  switch (c) {
    case MutationClass::kDropWaitSend:
    case MutationClass::kDuplicateWaitSend:
    case MutationClass::kWaitSendBeforeSend:
    case MutationClass::kWaitSendAfterSend:
      return true;
    default:
      return false;
  }
}

}  // namespace pipeproof
