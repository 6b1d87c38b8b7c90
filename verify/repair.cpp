// Repair(): see repair.h for what it promises. The steps, in order:
//
//   1. drop strays        SEND/RECVs no rank can pair, second copies, WAIT_SENDs without a SEND
//   2. add what is missing  the SEND and RECV of every message a compute needs and nobody carries,
//                         where its channel meets the peer's order
//   3. legal places       every op after what it sends, before what it feeds, inside a group
//                         (a WAIT added where one is all it lacks)
//   4. one FIFO order     per rank pair, the k-th SEND meets the k-th RECV of the same payload
//   5. break deadlocks    while the simulation deadlocks, the best edit around the cycle (or pair
//                         of edits); searched twice, for the furthest run and for the fewest edits
//   6. compare            with re-lowering the compute order; the fewest edits win
//
// The positions, windows and candidate edits are bookkeeping kept in the helpers below.

#include "verify/repair.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <tuple>

#include "schedule/generate.h"
#include "schedule/lower.h"
#include "verify/internal.h"

namespace pipeproof {
namespace {

using namespace verify_internal;

// What repair may move: SEND/RECV, WAIT and WAIT_SEND. Computes and data-parallel actions stay.
bool Movable(Op op) { return IsComm(op) || op == Op::kWait || IsWaitSend(op); }

// ---- positions in one rank's program

// The ordered rank pair a SEND/RECV travels on, as seen from its rank: (sends?, peer).
std::optional<std::pair<bool, int>> ChannelOf(const Schedule& s, const RouteIndex& routes,
                                              const Action& a) {
  if (!IsComm(a.op)) return std::nullopt;
  std::optional<Message> m = MessageOf(s, routes, a.TaskAt(0));
  if (!m) return std::nullopt;
  return std::pair{IsSend(a.op), m->peer};
}

// Where one rank's computes, SEND/RECVs, WAIT_SENDs and WAITs stand, indexed once (O(n)) so that
// the bounds of an op's place cost O(log n) each.
class RankPositions {
 public:
  explicit RankPositions(const std::vector<Action>& program) : size_(static_cast<int>(program.size())) {
    for (int i = 0; i < size_; ++i) {
      const Action& a = program[i];
      if (a.op == Op::kWait) {
        waits_.push_back(i);
      } else if (IsCompute(a.op)) {
        for (int t = 0; t < a.TaskCount(); ++t) {
          const Task task = a.TaskAt(t);
          const bool backward = task.op == Op::kBackward || task.op == Op::kInputGrad;
          if (task.op == Op::kForward || backward) {
            at_.emplace(std::tuple{backward ? Op::kBackward : Op::kForward, task.stage, task.microbatch}, i);
          }
        }
      } else if (IsComm(a.op) || IsWaitSend(a.op)) {
        at_.emplace(std::tuple{a.op, a.stage, a.microbatch}, i);
      }
    }
  }
  int size() const { return size_; }
  bool grouped() const { return !waits_.empty(); }
  // The first position of an op (SEND/RECV, WAIT_SEND) as written; -1 if none.
  int Of(const Action& a) const { return Find(a.op, a.stage, a.microbatch); }
  // The compute that makes what `comm` sends, or needs what it receives: an F for SEND_F/RECV_F,
  // a B or I for SEND_B/RECV_B; -1 if the rank has none.
  int ComputeFor(const Action& comm) const {
    const bool forward = comm.op == Op::kSendF || comm.op == Op::kRecvF;
    return Find(forward ? Op::kForward : Op::kBackward, comm.stage, comm.microbatch);
  }
  int LastWaitBefore(int end) const {
    auto it = std::lower_bound(waits_.begin(), waits_.end(), end);
    return it == waits_.begin() ? -1 : *std::prev(it);
  }
  int FirstWaitFrom(int from) const {
    auto it = std::lower_bound(waits_.begin(), waits_.end(), from);
    return it == waits_.end() ? -1 : *it;
  }

 private:
  int Find(Op op, int stage, int microbatch) const {
    auto it = at_.find({op, stage, microbatch});
    return it == at_.end() ? -1 : it->second;
  }
  int size_;
  std::map<std::tuple<Op, int, int>, int> at_;
  std::vector<int> waits_;
};

// What the op at `i` must stand after and before (positions in its program): a SEND after the
// compute that makes its payload and before its WAIT_SEND; a RECV before the compute it feeds,
// with a WAIT between on a rank with groups; on such a rank any SEND/RECV before the last WAIT,
// else it is never posted; a WAIT_SEND after its SEND and after the WAIT that posts it.
struct Bounds {
  int after = -1;
  int before = 0;
  bool Hold(int i) const { return after < i && i < before; }
};

Bounds DependencyBounds(const std::vector<Action>& program, const RankPositions& at, int i) {
  const Action& op = program[i];
  Bounds b{-1, at.size()};
  if (IsComm(op.op)) {
    if (at.grouped()) b.before = at.LastWaitBefore(at.size());
    const int compute = at.ComputeFor(op);
    if (IsSend(op.op)) {
      b.after = compute;
      if (const int waited = at.Of(Action::WaitSend(op.op, op.stage, op.microbatch)); waited >= 0) {
        b.before = std::min(b.before, waited);
      }
    } else if (compute >= 0) {
      b.before = std::min(b.before, at.grouped() ? at.LastWaitBefore(compute) : compute);
    }
  } else if (IsWaitSend(op.op)) {
    const int sent = at.Of(Action::Comm(SentBy(op.op), op.stage, op.microbatch));
    const int posted = at.grouped() ? at.FirstWaitFrom(sent) : sent;  // a group is posted at its WAIT
    if (sent >= 0) b.after = std::max(posted, sent);
  }
  return b;
}

// Position j of a program once the op at i is taken out: the positions a Window bounds.
int WithoutOp(int j, int i) { return j > i ? j - 1 : j; }

// Where the op at (r, i) may go: within its DependencyBounds and, with `fifo`, between the ops of
// its own channel on this rank. In positions of the program without the op: p puts it before the
// p-th action left.
struct Window {
  int lo = 0;
  int hi = 0;
  bool empty() const { return lo > hi; }
  bool Holds(int p) const { return lo <= p && p <= hi; }
  int Nearest(int p) const { return std::clamp(p, lo, hi); }
};

Window LegalWindow(const Schedule& s, const RouteIndex& routes, int r, int i, bool fifo) {
  const std::vector<Action>& program = s.program[r];
  const Bounds b = DependencyBounds(program, RankPositions(program), i);
  Window w{b.after < 0 ? 0 : WithoutOp(b.after, i) + 1, WithoutOp(b.before, i)};
  if (const auto channel = ChannelOf(s, routes, program[i]); fifo && channel) {
    for (int j = 0; j < static_cast<int>(program.size()); ++j) {
      if (j == i || ChannelOf(s, routes, program[j]) != channel) continue;
      if (j < i) {
        w.lo = std::max(w.lo, j + 1);
      } else {
        w.hi = std::min(w.hi, j - 1);
        break;
      }
    }
  }
  return w;
}

struct ChannelOps {
  std::vector<int> at;           // positions on the rank, in program order
  std::vector<Payload> payloads;  // what each carries
};

ChannelOps OpsOn(const Schedule& s, const RouteIndex& routes, int rank, bool sends, int peer) {
  ChannelOps ops;
  for (int i = 0; i < static_cast<int>(s.program[rank].size()); ++i) {
    const Action& a = s.program[rank][i];
    if (ChannelOf(s, routes, a) != std::pair{sends, peer}) continue;
    ops.at.push_back(i);
    ops.payloads.push_back(MessageOf(s, routes, a.TaskAt(0))->payload);
  }
  return ops;
}

// Where the op at (r, i) may stand so that its channel on this rank meets its messages in the
// order the peer's end has them: after each op of the channel whose payload comes earlier there,
// before each whose payload comes later (positions without the op, as in LegalWindow). No bound
// where the peer's end lacks this payload.
Window FifoWindow(const Schedule& s, const RouteIndex& routes, int r, int i) {
  Window w{0, static_cast<int>(s.program[r].size()) - 1};
  const Action& op = s.program[r][i];
  const auto channel = ChannelOf(s, routes, op);
  if (!channel) return w;
  const auto [sends, peer] = *channel;
  const std::vector<Payload> order = OpsOn(s, routes, peer, !sends, r).payloads;
  auto rank_in_order = [&](const Payload& p) {
    return static_cast<int>(std::find(order.begin(), order.end(), p) - order.begin());
  };
  const int k = rank_in_order(MessageOf(s, routes, op.TaskAt(0))->payload);
  if (k == static_cast<int>(order.size())) return w;
  const ChannelOps mine = OpsOn(s, routes, r, sends, peer);
  for (size_t j = 0; j < mine.at.size(); ++j) {
    if (mine.at[j] == i) continue;
    const int t = rank_in_order(mine.payloads[j]);
    if (t < k) w.lo = std::max(w.lo, WithoutOp(mine.at[j], i) + 1);
    if (t > k && t < static_cast<int>(order.size())) w.hi = std::min(w.hi, WithoutOp(mine.at[j], i));
  }
  return w;
}

// Where the op at (r, i) may stand by its dependencies and by the peer's order of its channel.
Window WindowInPeerOrder(const Schedule& s, const RouteIndex& routes, int r, int i) {
  Window w = LegalWindow(s, routes, r, i, /*fifo=*/false);
  const Window fifo = FifoWindow(s, routes, r, i);
  w.lo = std::max(w.lo, fifo.lo);
  w.hi = std::min(w.hi, fifo.hi);
  return w;
}

void MoveOp(std::vector<Action>& program, int from, int to) {
  const Action a = program[from];
  program.erase(program.begin() + from);
  program.insert(program.begin() + to, a);
}

// ---- why each op changed, in the verifier's terms

class Reasons {
 public:
  void Note(int rank, const Action& a, std::string why) { by_op_[{rank, ToString(a)}] = std::move(why); }
  std::string For(const RepairEdit& e) const {
    auto it = by_op_.find({e.rank, e.action});
    return it == by_op_.end() ? "" : it->second;
  }

 private:
  std::map<std::pair<int, std::string>, std::string> by_op_;
};

// ---- steps 1 and 2: strays out, missing messages in

// Why structure refuses a SEND/RECV on rank r, or "" if it is a real message of this schedule.
std::string StrayReason(const Schedule& s, const RouteIndex& routes, int r, const Action& a) {
  if (a.stage < 0 || a.stage >= s.stages) return fmt::format("stage {} is out of range", a.stage);
  if (a.microbatch < 0 || a.microbatch >= s.microbatches) {
    return fmt::format("microbatch {} is out of range", a.microbatch);
  }
  if (!routes.OnRoute(a.stage, a.microbatch)) {
    return fmt::format("stage {} is not on microbatch {}'s route", a.stage, a.microbatch);
  }
  if (s.placement[a.stage] != r) return fmt::format("stage {} is placed on rank {}", a.stage, s.placement[a.stage]);
  std::optional<Message> m = MessageOf(s, routes, a.TaskAt(0));
  if (!m) return "its stage has no neighbour on the route in that direction, so nothing travels";
  if (m->peer == r) return "both stages are on this rank, so it needs no message";
  if (s.forward_only && m->payload.kind == Payload::Kind::kGradient) {
    return "a forward-only pass sends no gradients";
  }
  return "";
}

// Of several copies of an op on rank r, the one to keep: the first that, alone, stands where it
// may (see LegalWindow), else the first.
int CopyToKeep(const Schedule& s, const RouteIndex& routes, int r, const std::vector<int>& copies) {
  for (int i : copies) {
    Schedule alone = s;
    std::vector<Action>& program = alone.program[r];
    int at = i;
    for (auto other = copies.rbegin(); other != copies.rend(); ++other) {
      if (*other == i) continue;
      program.erase(program.begin() + *other);
      if (*other < i) --at;
    }
    if (WindowInPeerOrder(alone, routes, r, at).Holds(at)) return i;
  }
  return copies.front();
}

void DropStrays(Schedule& s, Reasons& reasons) {
  const RouteIndex routes(s);
  for (int r = 0; r < s.ranks; ++r) {
    const std::vector<Action>& program = s.program[r];
    std::map<std::string, std::vector<int>> copies;
    for (int i = 0; i < static_cast<int>(program.size()); ++i) {
      if (program[i].op != Op::kWait && Movable(program[i].op)) copies[ToString(program[i])].push_back(i);
    }
    std::map<std::string, int> keeper;  // of each op written more than once, the copy to keep
    for (const auto& [op, at] : copies) {
      if (at.size() > 1) keeper[op] = CopyToKeep(s, routes, r, at);
    }
    const RankPositions positions(program);
    std::vector<Action> kept;
    for (int i = 0; i < static_cast<int>(program.size()); ++i) {
      const Action& a = program[i];
      std::string why;
      if (IsComm(a.op)) why = StrayReason(s, routes, r, a);
      if (IsWaitSend(a.op) && positions.Of(Action::Comm(SentBy(a.op), a.stage, a.microbatch)) < 0) {
        why = fmt::format("rank {} never writes the SEND it waits for", r);
      }
      if (auto it = keeper.find(ToString(a)); why.empty() && it != keeper.end() && it->second != i) {
        why = fmt::format("a second copy (the one kept is at [{}])", it->second);
      }
      if (why.empty()) {
        kept.push_back(a);
      } else {
        reasons.Note(r, a, fmt::format("structure: {}: {}; dropped", Where(s, r, i), why));
      }
    }
    s.program[r] = std::move(kept);
  }
}

// Adds the SEND and the RECV of every message a compute needs from another rank that no op
// carries: the SEND right after the compute that makes it, the RECV into the group before the
// compute that needs it (right before it on a rank without groups).
void AddMissing(Schedule& s, Reasons& reasons) {
  const RouteIndex routes(s);
  struct Missing {
    int rank;
    Action op;
    std::string why;
  };
  std::vector<Missing> missing;
  std::vector<RankPositions> written;
  for (const auto& program : s.program) written.emplace_back(program);
  for (int r = 0; r < s.ranks; ++r) {
    for (int i = 0; i < static_cast<int>(s.program[r].size()); ++i) {
      const Action& a = s.program[r][i];
      if (!IsCompute(a.op)) continue;
      for (int t = 0; t < a.TaskCount(); ++t) {
        const Task consumer = a.TaskAt(t);
        for (const PassKey& need : Needs(consumer, routes)) {
          const int from = s.placement[need.stage];
          if (from == r) continue;
          const bool activation = need.pass == Pass::kForward;
          const Action send = Action::Comm(activation ? Op::kSendF : Op::kSendB, need.stage, need.microbatch);
          const Action recv = Action::Comm(activation ? Op::kRecvF : Op::kRecvB, consumer.stage, consumer.microbatch);
          const std::string needs = fmt::format("dependencies: {} needs {} from rank {}", Where(s, r, i),
                                                ToString(NeededPayload(need, consumer)), from);
          if (written[from].Of(send) < 0) missing.push_back({from, send, needs + ", which no SEND carries; added"});
          if (written[r].Of(recv) < 0) missing.push_back({r, recv, needs + ", which no RECV receives; added"});
        }
      }
    }
  }
  for (const Missing& m : missing) {
    std::vector<Action>& program = s.program[m.rank];
    const RankPositions positions(program);
    const int compute = positions.ComputeFor(m.op);
    if (compute < 0) continue;  // structure holds, so the compute is there
    const bool grouped = positions.grouped();
    if (IsSend(m.op.op)) {
      program.insert(program.begin() + compute + 1, m.op);
      if (grouped && positions.FirstWaitFrom(compute + 1) < 0) {
        program.push_back(Action::Wait());
        reasons.Note(m.rank, Action::Wait(), "the added SEND needs a WAIT after it to be posted; added");
      }
    } else if (const int wait = grouped ? positions.LastWaitBefore(compute) : -1; wait >= 0) {
      program.insert(program.begin() + wait, m.op);
    } else {
      program.insert(program.begin() + compute, m.op);
      if (grouped) {
        program.insert(program.begin() + compute + 1, Action::Wait());
        reasons.Note(m.rank, Action::Wait(), "the added RECV needs a WAIT before its compute; added");
      }
    }
    // Where its channel meets the peer's order, as near that place as its dependencies allow.
    const int at = static_cast<int>(std::find(program.begin(), program.end(), m.op) - program.begin());
    const Window w = WindowInPeerOrder(s, routes, m.rank, at);
    if (!w.empty() && !w.Holds(at)) MoveOp(program, at, w.Nearest(at));
    reasons.Note(m.rank, m.op, m.why);
  }
}

// ---- step 4: one FIFO order per rank pair

// A longest common subsequence of `a` and `b`: which positions of each it keeps. None past the
// size cap (the caller then gives up on local edits, or counts every position as changed).
struct CommonSubsequence {
  std::vector<bool> in_a, in_b;
};
template <typename T>
std::optional<CommonSubsequence> LongestCommonSubsequence(const std::vector<T>& a, const std::vector<T>& b) {
  const size_t n = a.size(), m = b.size();
  if (n * m > 16'000'000) return std::nullopt;
  std::vector<std::vector<int32_t>> len(n + 1, std::vector<int32_t>(m + 1, 0));
  for (size_t i = n; i-- > 0;) {
    for (size_t j = m; j-- > 0;) {
      len[i][j] = a[i] == b[j] ? len[i + 1][j + 1] + 1 : std::max(len[i + 1][j], len[i][j + 1]);
    }
  }
  CommonSubsequence kept{std::vector<bool>(n, false), std::vector<bool>(m, false)};
  for (size_t i = 0, j = 0; i < n && j < m;) {
    if (a[i] == b[j]) {
      kept.in_a[i] = kept.in_b[j] = true;
      ++i, ++j;
    } else if (len[i + 1][j] >= len[i][j + 1]) {
      ++i;
    } else {
      ++j;
    }
  }
  return kept;
}

// Reorders the ops of one channel on `rank` into `target`'s order of payloads: those on a longest
// common subsequence stay; each other one moves to the place nearest its own that lies between
// its neighbours in the target order and inside its dependency window. False when one has none.
bool ReorderChannel(Schedule& s, const RouteIndex& routes, int rank, bool sends, int peer,
                    const std::vector<Payload>& target, const std::string& why, Reasons& reasons) {
  const ChannelOps ops = OpsOn(s, routes, rank, sends, peer);
  const std::optional<CommonSubsequence> kept = LongestCommonSubsequence(ops.payloads, target);
  if (!kept) return false;
  std::vector<bool> placed = kept->in_b;  // target positions whose op already stands in order
  // Each move below looks its neighbours up, O(n): past this many the local edits are no repair
  // a user wants, and re-lowering answers instead.
  constexpr int64_t kMostMoves = 2000;
  if (std::count(placed.begin(), placed.end(), false) > kMostMoves) return false;
  std::vector<Action>& program = s.program[rank];
  auto position_of = [&](const Payload& p) {  // where the channel's op carrying p stands now
    const ChannelOps now = OpsOn(s, routes, rank, sends, peer);
    const auto it = std::find(now.payloads.begin(), now.payloads.end(), p);
    return it == now.payloads.end() ? -1 : now.at[it - now.payloads.begin()];
  };
  for (size_t t = 0; t < target.size(); ++t) {
    if (placed[t]) continue;
    const int from = position_of(target[t]);
    if (from < 0) return false;
    Window w = LegalWindow(s, routes, rank, from, /*fifo=*/false);
    for (size_t k = t; k-- > 0;) {
      if (placed[k]) {
        w.lo = std::max(w.lo, WithoutOp(position_of(target[k]), from) + 1);
        break;
      }
    }
    for (size_t k = t + 1; k < target.size(); ++k) {
      if (placed[k]) {
        w.hi = std::min(w.hi, WithoutOp(position_of(target[k]), from));
        break;
      }
    }
    if (w.empty()) return false;
    const Action op = program[from];
    MoveOp(program, from, w.Nearest(from));
    reasons.Note(rank, op, why);
    placed[t] = true;
  }
  return true;
}

// Every ordered rank pair whose k-th SEND and k-th RECV carry different payloads is put in one
// order: the RECVs follow the SENDs' order, or else the SENDs the RECVs'.
bool OrderChannels(Schedule& s, Reasons& reasons) {
  const RouteIndex routes(s);
  std::set<std::pair<int, int>> pairs;  // (sender, receiver) with traffic: a rank has few peers
  for (int r = 0; r < s.ranks; ++r) {
    for (const Action& a : s.program[r]) {
      if (const auto channel = ChannelOf(s, routes, a)) {
        pairs.insert(channel->first ? std::pair{r, channel->second} : std::pair{channel->second, r});
      }
    }
  }
  for (const auto& [p, q] : pairs) {
    const ChannelOps sent = OpsOn(s, routes, p, true, q);
    const ChannelOps received = OpsOn(s, routes, q, false, p);
    if (sent.payloads == received.payloads) continue;
    size_t k = 0;
    while (k < sent.payloads.size() && k < received.payloads.size() &&
           sent.payloads[k] == received.payloads[k]) {
      ++k;
    }
    const std::string why = fmt::format(
        "matching: message {} from rank {} to rank {} carried {} where {} was expected (NCCL "
        "matches the k-th SEND with the k-th RECV, whatever they carry); reordered",
        k, p, q, k < sent.payloads.size() ? ToString(sent.payloads[k]) : "nothing",
        k < received.payloads.size() ? ToString(received.payloads[k]) : "nothing");
    bool ordered = false;
    for (const bool receives_follow : {true, false}) {
      Schedule attempt = s;
      Reasons noted = reasons;
      ordered = receives_follow ? ReorderChannel(attempt, routes, q, false, p, sent.payloads, why, noted)
                                : ReorderChannel(attempt, routes, p, true, q, received.payloads, why, noted);
      if (ordered) {
        s = std::move(attempt);
        reasons = std::move(noted);
        break;
      }
    }
    if (!ordered) return false;
  }
  return true;
}

// ---- step 3: every op inside its window

// On a rank with groups, where a WAIT would let the op at `i` stay: right before the compute a
// RECV feeds, or before the first compute after a SEND (the reference waits before every
// compute); -1 where the rank has no groups or the op is neither.
int WaitNeededAt(const std::vector<Action>& program, const RankPositions& positions, int i) {
  const Action& a = program[i];
  if (!IsComm(a.op) || !positions.grouped()) return -1;
  if (IsRecv(a.op)) {
    const int compute = positions.ComputeFor(a);
    return compute > i ? compute : -1;
  }
  int next = i + 1;
  while (next < static_cast<int>(program.size()) && !IsCompute(program[next].op)) ++next;
  return next;
}

// Moves every op that stands outside its window to the nearest place inside. With `fifo_may_break`
// an op whose channel order leaves it no place moves anyway (OrderChannels then reorders the
// channel's other end); false when some op has no place.
bool PlaceInWindows(Schedule& s, Reasons& reasons, bool fifo_may_break) {
  const RouteIndex routes(s);
  int64_t moves_left = 2 * s.ActionCount();  // each op finds its place once; never a tug of war
  for (int r = 0; r < s.ranks; ++r) {
    RankPositions positions(s.program[r]);
    for (int i = 0; i < static_cast<int>(s.program[r].size()); ++i) {
      const Action op = s.program[r][i];
      if (!IsComm(op.op) && !IsWaitSend(op.op)) continue;
      if (DependencyBounds(s.program[r], positions, i).Hold(i)) continue;
      if (const int at = WaitNeededAt(s.program[r], positions, i); at >= 0) {  // one WAIT instead of a move?
        std::vector<Action> waited = s.program[r];
        waited.insert(waited.begin() + at, Action::Wait());
        if (DependencyBounds(waited, RankPositions(waited), i).Hold(i)) {
          reasons.Note(r, Action::Wait(),
                       fmt::format("dependencies: {} was never waited for before {}; a WAIT added",
                                   Where(s, r, i), IsRecv(op.op) ? "the compute it feeds" : "the end"));
          s.program[r] = std::move(waited);
          positions = RankPositions(s.program[r]);
          continue;
        }
      }
      Window w = LegalWindow(s, routes, r, i, /*fifo=*/true);
      if (w.empty() && fifo_may_break) w = LegalWindow(s, routes, r, i, /*fifo=*/false);
      if (w.empty() || --moves_left < 0) return false;
      const std::string where = Where(s, r, i);
      MoveOp(s.program[r], i, w.Nearest(i));
      reasons.Note(r, op,
                   fmt::format("dependencies: {} stood {}; moved to the nearest place where it holds",
                               where,
                               IsSend(op.op)        ? "before the compute that makes its payload"
                               : IsWaitSend(op.op) ? "before the SEND it waits for is posted"
                                                   : "where the compute it feeds cannot wait for it"));
      positions = RankPositions(s.program[r]);
      i = -1;  // positions moved: look at this rank again
    }
  }
  return true;
}

// ---- step 5: break deadlocks, one edit at a time

struct Probe {
  bool dependencies_ok = false;
  bool matching_ok = false;
  bool complete = false;
  int64_t progress = 0;  // actions that ran
  std::vector<CycleStep> cycle;
  Messages messages;
};

Probe Examine(const Schedule& s, const VerifyOptions& options) {
  const RouteIndex routes(s);
  Probe p;
  p.messages = MatchMessages(s, routes);
  const ReceiveIndex receives(s, p.messages);  // shared, as Verify shares it
  p.dependencies_ok = CheckDependencies(s, routes, p.messages, receives).ok();
  p.matching_ok = CheckMatching(s, p.messages).ok();
  SimulationResult sim = RunSimulation(s, routes, p.messages, receives, options.model, Costs{}, options.streams);
  p.complete = sim.timeline.complete;
  for (const auto& rank : sim.timeline.ranks) {
    for (const TimedAction& t : rank) p.progress += t.end < std::numeric_limits<double>::infinity();
  }
  p.cycle = std::move(sim.cycle);
  return p;
}

// One edit to try: move the op at (rank, index) to `to` (in positions without it), insert a
// WAIT before `index`, or remove the WAIT at `index`.
struct Candidate {
  enum class Kind { kMove, kInsertWait, kRemoveWait } kind = Kind::kMove;
  int rank = 0;
  int index = 0;
  int to = 0;
  int Shift() const { return kind == Kind::kMove ? std::abs(to - index) : 1; }
  Action Applied(Schedule& s) const {
    std::vector<Action>& program = s.program[rank];
    switch (kind) {
      case Kind::kMove: MoveOp(program, index, to); return program[to];
      case Kind::kInsertWait: program.insert(program.begin() + index, Action::Wait()); break;
      case Kind::kRemoveWait: program.erase(program.begin() + index); break;
    }
    return Action::Wait();
  }
};

constexpr int kPlacesPerOp = 48;  // nearest first: far moves rarely beat near ones

void AddMoves(const Schedule& s, const RouteIndex& routes, int r, int i, std::vector<Candidate>& out) {
  const Window w = LegalWindow(s, routes, r, i, /*fifo=*/true);
  std::vector<int> places;
  for (int p = w.lo; p <= w.hi; ++p) {
    if (p != i) places.push_back(p);
  }
  std::stable_sort(places.begin(), places.end(), [i](int a, int b) { return std::abs(a - i) < std::abs(b - i); });
  if (places.size() > kPlacesPerOp) places.resize(kPlacesPerOp);
  for (int p : places) out.push_back({Candidate::Kind::kMove, r, i, p});
}

// The edits around a deadlock cycle: moving each blocked op, its partner, the ops of a blocked
// group and the RECVs a blocked compute waits for; splitting or merging the blocked groups.
std::vector<Candidate> AroundCycle(const Schedule& s, const RouteIndex& routes, const Probe& now) {
  std::set<std::pair<int, int>> ops;
  std::vector<Candidate> out;
  auto add_op = [&](int r, int i) {
    const Op op = s.program[r][i].op;
    if (!IsComm(op) && !IsWaitSend(op)) return;
    ops.insert({r, i});
    if (const Endpoint partner = now.messages.partner[r][i]; IsComm(op) && partner.valid()) {
      ops.insert({partner.rank, partner.index});
    }
  };
  for (const CycleStep& step : now.cycle) {
    const int r = step.rank, i = step.index;
    const std::vector<Action>& program = s.program[r];
    const RankPositions positions(program);
    const Action& a = program[i];
    if (a.op == Op::kWait) {
      const int previous = positions.LastWaitBefore(i);
      for (int j = previous + 1; j < i; ++j) {
        add_op(r, j);
        if (IsComm(program[j].op) && j + 1 < i) out.push_back({Candidate::Kind::kInsertWait, r, j + 1, 0});
      }
      out.push_back({Candidate::Kind::kRemoveWait, r, i, 0});
      if (previous >= 0) out.push_back({Candidate::Kind::kRemoveWait, r, previous, 0});
    } else if (IsCompute(a.op)) {
      for (int t = 0; t < a.TaskCount(); ++t) {
        const Task task = a.TaskAt(t);
        const Op recv = task.op == Op::kForward ? Op::kRecvF : Op::kRecvB;
        if (const int at = positions.Of(Action::Comm(recv, task.stage, task.microbatch)); at >= 0) {
          add_op(r, at);
        }
      }
      for (int j = i - 1; j >= 0 && !IsCompute(program[j].op); --j) add_op(r, j);
    } else {
      add_op(r, i);
      if (IsWaitSend(a.op)) {
        if (const int sent = positions.Of(Action::Comm(SentBy(a.op), a.stage, a.microbatch)); sent >= 0) {
          add_op(r, sent);
        }
      }
    }
  }
  std::set<int> ranks;  // of the cycle: a WAIT at the end posts what follows their last one
  for (const CycleStep& step : now.cycle) ranks.insert(step.rank);
  for (int r : ranks) {
    const std::vector<Action>& program = s.program[r];
    if (UsesWaitGroups(program) && IsComm(program.back().op)) {
      out.push_back({Candidate::Kind::kInsertWait, r, static_cast<int>(program.size()), 0});
    }
  }
  for (const auto& [r, i] : ops) AddMoves(s, routes, r, i, out);
  return out;
}

// "rank 0 [3] 0SEND_F1 -> rank 1 [3] 1RECV_F1 -> ...": each step waits for the next.
std::string CycleText(const std::vector<CycleStep>& cycle) {
  std::vector<std::string> steps;
  for (const CycleStep& step : cycle) steps.push_back(fmt::format("rank {} [{}] {}", step.rank, step.index, step.action));
  return fmt::format("{}", fmt::join(steps, " -> "));
}

std::string CycleSummary(const std::vector<CycleStep>& cycle) {
  return fmt::format("deadlock: breaks the cycle {} (each waits for the next; positions before this edit)",
                     CycleText(cycle));
}

class Budget {
 public:
  explicit Budget(int64_t actions) : left_(actions) {}
  bool Spend(int64_t actions) { return (left_ -= actions) >= 0; }
  bool Spent() const { return left_ < 0; }

 private:
  int64_t left_;
};
// Probing a candidate runs matching, dependencies and the simulation: about a microsecond per
// action, so this caps the search at tens of seconds.
constexpr int64_t kSearchBudget = 40'000'000;

// How the search ranks the edits that let the execution run further: by how far it then runs
// (fewest rounds to the end), or by how few edits the schedule then differs from the input by
// (an added op placed again, or a moved op moved again, costs nothing new). Repair runs both.
enum class Preference { kFurthest, kCheapest };

struct Ranked {
  int64_t run = 0;  // actions that ran; the most there is when the execution completes
  int64_t edits = 0;
  int shift = 0;
  bool BetterThan(const Ranked& o, Preference preference) const {
    if (preference == Preference::kFurthest) {
      return std::tuple(run, -edits, -shift) > std::tuple(o.run, -o.edits, -o.shift);
    }
    return std::tuple(-edits, run, -shift) > std::tuple(-o.edits, o.run, -o.shift);
  }
};

struct Search {
  Schedule schedule;
  Reasons reasons;
  std::string note;  // why it stopped short
  bool sound = false;
};

// One round of the search: the edits to apply (one, or two where no single edit helps) and how
// the execution then runs.
struct Step {
  std::vector<Candidate> edits;
  Probe probe;
  Ranked rank;
};

constexpr int kNeutralTried = 6;  // edits that change the cycle but not the run, tried as first halves

// The best edit around the cycle that lets the execution run further. Where there is none and
// `pairs` is set, an edit that leaves the run as far as before (a plateau) followed by the best
// edit around its new cycle. Empty when none helps or the budget is spent.
std::optional<Step> BestStep(const Schedule& s, const Schedule& original, const Probe& now,
                             const VerifyOptions& options, Preference preference, Budget& budget,
                             bool pairs) {
  const RouteIndex routes(s);
  std::optional<Step> best;
  std::vector<std::pair<Ranked, Candidate>> neutral;
  for (const Candidate& c : AroundCycle(s, routes, now)) {
    if (!budget.Spend(s.ActionCount())) return std::nullopt;
    Schedule tried = s;
    c.Applied(tried);
    Probe p = Examine(tried, options);
    if (!p.dependencies_ok || !p.matching_ok) continue;
    if (!p.complete && p.progress < now.progress) continue;  // worse: no diff needed to rank it
    const Ranked rank{p.complete ? std::numeric_limits<int64_t>::max() : p.progress,
                      static_cast<int64_t>(CommunicationDiff(original, tried).size()), c.Shift()};
    if (!p.complete && p.progress == now.progress) {
      neutral.push_back({rank, c});
      continue;
    }
    if (!best || rank.BetterThan(best->rank, preference)) best = Step{{c}, std::move(p), rank};
  }
  if (best || !pairs) return best;
  std::stable_sort(neutral.begin(), neutral.end(), [](const auto& a, const auto& b) {
    return std::pair{a.first.edits, a.first.shift} < std::pair{b.first.edits, b.first.shift};
  });
  if (neutral.size() > kNeutralTried) neutral.resize(kNeutralTried);
  for (const auto& [ignored, first] : neutral) {
    Schedule tried = s;
    first.Applied(tried);
    const Probe after_first = Examine(tried, options);
    std::optional<Step> second = BestStep(tried, original, after_first, options, preference, budget, false);
    if (!second) continue;
    second->edits.insert(second->edits.begin(), first);
    if (!best || second->rank.BetterThan(best->rank, preference)) best = std::move(second);
  }
  return best;
}

// Applies, while the simulation deadlocks, the best step around the cycle; stops when none
// lets the execution run further or past the budget.
void BreakDeadlocks(Search& search, const Schedule& original, const VerifyOptions& options, Preference preference) {
  Schedule& s = search.schedule;
  Budget budget(kSearchBudget / 2);
  Probe now = Examine(s, options);
  while (!now.complete) {
    if (!now.dependencies_ok || !now.matching_ok) {
      search.note = "the messages could not be put in an order that keeps every dependency";
      return;
    }
    std::optional<Step> step = BestStep(s, original, now, options, preference, budget, /*pairs=*/true);
    if (!step) {
      search.note = budget.Spent() ? "the search for single edits ran past its budget"
                                   : "no edit or pair of edits around the cycle " + CycleText(now.cycle) +
                                         " lets the execution run further";
      return;
    }
    const std::string why = CycleSummary(now.cycle);
    for (const Candidate& c : step->edits) search.reasons.Note(c.rank, c.Applied(s), why);
    now = std::move(step->probe);
  }
  search.sound = true;
}

// Steps 2 to 5 on a schedule whose strays are dropped: of the two searches, the sound one with
// fewer edits; none when neither is sound, `note` saying why.
std::optional<Search> RepairLocally(Schedule local, Reasons reasons, const Schedule& original,
                                    const VerifyOptions& options, std::string& note) {
  AddMissing(local, reasons);
  if (!PlaceInWindows(local, reasons, /*fifo_may_break=*/true) || !OrderChannels(local, reasons) ||
      !PlaceInWindows(local, reasons, /*fifo_may_break=*/false) || !CheckStructure(local).ok()) {
    note = "the messages could not be put in one FIFO order that keeps every dependency";
    return std::nullopt;
  }
  std::optional<Search> best;
  size_t best_edits = 0;
  for (Preference preference : {Preference::kCheapest, Preference::kFurthest}) {
    Search search{local, reasons, "", false};
    BreakDeadlocks(search, original, options, preference);
    if (!search.sound) {
      if (note.empty()) note = search.note;
      continue;
    }
    const size_t edits = CommunicationDiff(original, search.schedule).size();
    if (!best || edits < best_edits) {
      best = std::move(search);
      best_edits = edits;
    }
  }
  return best;
}

// ---- step 6: re-lowering, the other candidate

bool HasWaitSends(const Schedule& s) {
  for (const auto& program : s.program) {
    for (const Action& a : program) {
      if (IsWaitSend(a.op)) return true;
    }
  }
  return false;
}

std::string FirstFailure(const VerifyReport& report) {
  for (const CheckResult& c : report.checks) {
    if (!c.ok()) return fmt::format("FAILED ({}): {}", c.name, c.message);
  }
  return "sound";
}

}  // namespace

std::string_view RepairEditKindName(RepairEdit::Kind kind) {
  switch (kind) {
    case RepairEdit::Kind::kMove: return "move";
    case RepairEdit::Kind::kAdd: return "add";
    case RepairEdit::Kind::kRemove: return "remove";
  }
  return "?";
}

std::string Describe(const RepairEdit& e) {
  switch (e.kind) {
    case RepairEdit::Kind::kMove:
      return fmt::format("rank {}: move {} from [{}] to [{}]", e.rank, e.action, e.from, e.to);
    case RepairEdit::Kind::kAdd: return fmt::format("rank {}: add {} at [{}]", e.rank, e.action, e.to);
    case RepairEdit::Kind::kRemove:
      return fmt::format("rank {}: remove {} from [{}]", e.rank, e.action, e.from);
  }
  return "";
}

std::string_view RepairOutcomeName(RepairResult::Outcome outcome) {
  switch (outcome) {
    case RepairResult::Outcome::kAlreadySound: return "already-sound";
    case RepairResult::Outcome::kRepaired: return "repaired";
    case RepairResult::Outcome::kComputeCannotRun: return "compute-order-cannot-run";
  }
  return "?";
}

bool RepairSound(const VerifyReport& report) {
  for (const char* name : {"structure", "dependencies", "matching", "deadlock"}) {
    const CheckResult* c = report.Find(name);
    if (!c || !c->ok()) return false;
  }
  return true;
}

std::vector<RepairEdit> CommunicationDiff(const Schedule& original, const Schedule& repaired) {
  if (original.ranks != repaired.ranks || original.program.size() != repaired.program.size()) {
    throw InputError(fmt::format("the two schedules have {} and {} ranks", original.program.size(),
                                 repaired.program.size()));
  }
  std::vector<RepairEdit> edits;
  for (int r = 0; r < static_cast<int>(original.program.size()); ++r) {
    // Each program as gaps of movable ops between its fixed actions.
    auto gaps_of = [](const std::vector<Action>& program, std::vector<Action>& fixed) {
      std::vector<std::vector<int>> gaps(1);
      for (int i = 0; i < static_cast<int>(program.size()); ++i) {
        if (Movable(program[i].op)) {
          gaps.back().push_back(i);
        } else {
          fixed.push_back(program[i]);
          gaps.emplace_back();
        }
      }
      return gaps;
    };
    const std::vector<Action>& a = original.program[r];
    const std::vector<Action>& b = repaired.program[r];
    std::vector<Action> fixed_a, fixed_b;
    const auto gaps_a = gaps_of(a, fixed_a), gaps_b = gaps_of(b, fixed_b);
    if (fixed_a != fixed_b) {
      throw InputError(fmt::format(
          "rank {}: the computes differ ({} and {} of them, or in another order); only "
          "communication may differ",
          r, fixed_a.size(), fixed_b.size()));
    }
    struct Loose {
      int index;
      size_t gap;
      bool used = false;
    };
    std::vector<Loose> removed, added;
    for (size_t g = 0; g < gaps_a.size(); ++g) {
      std::vector<Action> ga, gb;
      for (int i : gaps_a[g]) ga.push_back(a[i]);
      for (int i : gaps_b[g]) gb.push_back(b[i]);
      const CommonSubsequence kept = LongestCommonSubsequence(ga, gb).value_or(
          CommonSubsequence{std::vector<bool>(ga.size(), false), std::vector<bool>(gb.size(), false)});
      for (size_t k = 0; k < ga.size(); ++k) {
        if (!kept.in_a[k]) removed.push_back({gaps_a[g][k], g});
      }
      for (size_t k = 0; k < gb.size(); ++k) {
        if (!kept.in_b[k]) added.push_back({gaps_b[g][k], g});
      }
    }
    for (Loose& gone : removed) {
      Loose* back = nullptr;
      for (Loose& in : added) {
        if (in.used || !(b[in.index] == a[gone.index])) continue;
        const auto distance = [&](const Loose& l) { return l.gap > gone.gap ? l.gap - gone.gap : gone.gap - l.gap; };
        if (!back || distance(in) < distance(*back)) back = &in;
      }
      if (back) {
        back->used = gone.used = true;
        edits.push_back({RepairEdit::Kind::kMove, r, ToString(a[gone.index]), gone.index, back->index, ""});
      }
    }
    for (const Loose& gone : removed) {
      if (!gone.used) edits.push_back({RepairEdit::Kind::kRemove, r, ToString(a[gone.index]), gone.index, -1, ""});
    }
    for (const Loose& in : added) {
      if (!in.used) edits.push_back({RepairEdit::Kind::kAdd, r, ToString(b[in.index]), -1, in.index, ""});
    }
  }
  std::stable_sort(edits.begin(), edits.end(), [](const RepairEdit& x, const RepairEdit& y) {
    return std::pair{x.rank, x.from >= 0 ? x.from : x.to} < std::pair{y.rank, y.from >= 0 ? y.from : y.to};
  });
  return edits;
}

RepairResult Repair(const Schedule& input, const VerifyOptions& options) {
  RepairResult result;
  Schedule original = input;
  CompleteTopology(original);
  result.before = Verify(original, options);
  result.schedule = original;
  result.after = result.before;
  if (RepairSound(result.before)) return result;

  // The computes must be a schedule of their own before anything can be placed around them.
  Schedule local = original;
  Reasons reasons;
  DropStrays(local, reasons);
  const CheckResult structure = CheckStructure(ComputeOnly(local));
  if (!structure.ok()) {
    result.outcome = RepairResult::Outcome::kComputeCannotRun;
    result.problem = "the computes fail the structure check, and repair moves only communication: " +
                     structure.message;
    for (const std::string& line : structure.details) result.problem += "\n  " + line;
    return result;
  }
  LoweringResult relowered = Lower(ComputeOnly(local));
  if (!relowered.schedule) {
    result.outcome = RepairResult::Outcome::kComputeCannotRun;
    result.problem = relowered.problem;
    return result;
  }
  if (HasWaitSends(original)) relowered.schedule = AddWaitSends(*relowered.schedule);
  const std::vector<RepairEdit> relowered_edits = CommunicationDiff(original, *relowered.schedule);
  result.relowered_edits = static_cast<int>(relowered_edits.size());

  // The local repair, unless re-lowering changes less.
  result.outcome = RepairResult::Outcome::kRepaired;
  if (std::optional<Search> local_repair = RepairLocally(std::move(local), std::move(reasons), original,
                                                         options, result.local_note)) {
    std::vector<RepairEdit> edits = CommunicationDiff(original, local_repair->schedule);
    for (RepairEdit& e : edits) e.reason = local_repair->reasons.For(e);
    result.after = Verify(local_repair->schedule, options);
    if (!RepairSound(result.after)) {
      result.local_note = "pipeproof bug: the local edits did not verify: " + FirstFailure(result.after);
    } else if (edits.size() <= relowered_edits.size()) {
      result.method = "local";
      result.local_note.clear();
      result.schedule = std::move(local_repair->schedule);
      result.edits = std::move(edits);
      return result;
    } else {
      result.local_note = fmt::format("the local edits ({}) change more than re-lowering", edits.size());
    }
  }
  result.method = "re-lowered";
  result.schedule = std::move(*relowered.schedule);
  result.edits = relowered_edits;
  for (RepairEdit& e : result.edits) {
    e.reason = "re-lowered: every SEND right after the compute that makes its payload, every RECV where "
               "the dataflow run of the compute order has it ready, all ranks in one order of messages";
  }
  result.after = Verify(result.schedule, options);
  return result;
}

std::string RepairResult::Text() const {
  std::string out = fmt::format("before: {}\n", FirstFailure(before));
  switch (outcome) {
    case Outcome::kAlreadySound:
      out += "already sound under " + DescribeSemantics(before.model, before.streams) +
             " (structure, dependencies, matching and deadlock pass): nothing to repair\n";
      return out;
    case Outcome::kComputeCannotRun:
      out += "cannot repair: " + problem + "\n";
      return out;
    case Outcome::kRepaired: break;
  }
  out += fmt::format("{} edit{} ({}; re-lowering the compute order would change {}):\n", edits.size(),
                     edits.size() == 1 ? "" : "s",
                     method == "local" ? "local edits, each answering a finding of the verifier"
                                       : "the compute order re-lowered",
                     relowered_edits);
  if (!local_note.empty()) out += "  (local edits: " + local_note + ")\n";
  for (size_t k = 0; k < edits.size(); ++k) {
    out += fmt::format("  {}. {}\n", k + 1, Describe(edits[k]));
    if (!edits[k].reason.empty()) out += "       why: " + edits[k].reason + "\n";
  }
  out += "after, verified under " + DescribeSemantics(after.model, after.streams) + ":\n";
  out += after.Text();
  if (const CheckResult* memory = after.Find("memory"); memory && !memory->ok()) {
    out += "(the memory check fails as it did before: the compute order decides it, and repair keeps that)\n";
  }
  return out;
}

std::string RepairResult::Json() const {
  nlohmann::ordered_json j;
  j["ok"] = outcome != Outcome::kComputeCannotRun && RepairSound(after);
  j["outcome"] = std::string(RepairOutcomeName(outcome));
  j["model"] = std::string(CommModelName(before.model));
  j["streams"] = std::string(StreamLayoutName(before.streams));
  j["method"] = method;
  j["edit_count"] = edits.size();
  j["relowered_edits"] = relowered_edits;
  if (!local_note.empty()) j["local_note"] = local_note;
  if (!problem.empty()) j["problem"] = problem;
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const RepairEdit& e : edits) {
    list.push_back({{"kind", std::string(RepairEditKindName(e.kind))},
                    {"rank", e.rank},
                    {"action", e.action},
                    {"from", e.from},
                    {"to", e.to},
                    {"reason", e.reason}});
  }
  j["edits"] = std::move(list);
  j["before"] = nlohmann::ordered_json::parse(before.Json());
  j["after"] = nlohmann::ordered_json::parse(after.Json());
  return j.dump(2) + "\n";
}

}  // namespace pipeproof
