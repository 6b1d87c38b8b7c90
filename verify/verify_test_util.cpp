#include "verify/verify_test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include "schedule/formats.h"
#include "schedule/generate.h"

namespace pipeproof::testing {

Schedule Pps(const std::string& text) { return ParsePps(text, "test.pps"); }

Schedule Generated(const std::string& kind, int ranks, int microbatches, bool overlap) {
  return Generate({.kind = kind, .ranks = ranks, .microbatches = microbatches, .overlap = overlap});
}

const std::vector<std::string>& CheckNames() {
  static const std::vector<std::string> names = {"structure", "dependencies", "matching",
                                                 "deadlock",  "memory",       "timing"};
  return names;
}

std::vector<std::string> FailedChecks(const VerifyReport& report) {
  std::vector<std::string> out;
  for (const CheckResult& c : report.checks) {
    if (!c.ok()) out.push_back(c.name);
  }
  return out;
}

namespace {

int Size(const std::vector<Action>& v) { return static_cast<int>(v.size()); }

// Where each (pass, stage, microbatch) is computed: the first compute task making it, on the
// stage's placed rank, found by scanning that rank.
int ProducerIndex(const Schedule& s, Pass pass, int stage, int mb) {
  const auto& program = s.program[s.placement[stage]];
  for (int i = 0; i < Size(program); ++i) {
    const Action& a = program[i];
    for (int k = 0; k < a.TaskCount(); ++k) {
      const Task t = a.TaskAt(k);
      if (t.stage != stage || t.microbatch != mb) continue;
      const bool makes =
          (pass == Pass::kForward && t.op == Op::kForward) ||
          (pass == Pass::kBackward && (t.op == Op::kBackward || t.op == Op::kInputGrad)) ||
          (pass == Pass::kWeight && (t.op == Op::kBackward || t.op == Op::kWeightGrad));
      if (makes) return i;
    }
  }
  return -1;
}

struct Ep {
  int rank = -1, index = -1;
};

// The k-th SEND from p to q with the k-th RECV on q from p.
struct Pairing {
  std::vector<std::vector<std::optional<Payload>>> payload;
  std::vector<std::vector<int>> peer;
  std::vector<std::vector<Ep>> partner;
};

Pairing Pair(const Schedule& s) {
  RouteIndex routes(s);
  Pairing p;
  std::map<std::pair<int, int>, std::vector<int>> sends, recvs;
  p.payload.resize(s.ranks);
  p.peer.resize(s.ranks);
  p.partner.resize(s.ranks);
  for (int r = 0; r < s.ranks; ++r) {
    p.payload[r].resize(s.program[r].size());
    p.peer[r].assign(s.program[r].size(), -1);
    p.partner[r].resize(s.program[r].size());
    for (int i = 0; i < Size(s.program[r]); ++i) {
      const Action& a = s.program[r][i];
      if (!IsComm(a.op)) continue;
      auto m = MessageOf(s, routes, a.TaskAt(0));
      if (!m) continue;
      p.payload[r][i] = m->payload;
      p.peer[r][i] = m->peer;
      (IsSend(a.op) ? sends[{r, m->peer}] : recvs[{m->peer, r}]).push_back(i);
    }
  }
  for (auto& [key, list] : sends) {
    auto& other = recvs[key];
    for (size_t k = 0; k < list.size() && k < other.size(); ++k) {
      p.partner[key.first][list[k]] = {key.second, other[k]};
      p.partner[key.second][other[k]] = {key.first, list[k]};
    }
  }
  return p;
}

// The payloads a compute at (r, i) needs from other ranks.
std::vector<Payload> RemoteInputs(const Schedule& s, const RouteIndex& routes, int r, int i) {
  std::vector<Payload> out;
  const Action& a = s.program[r][i];
  for (int k = 0; k < a.TaskCount(); ++k) {
    const Task t = a.TaskAt(k);
    if (t.op == Op::kForward) {
      int prev = routes.Prev(t.stage, t.microbatch);
      if (prev >= 0 && s.placement[prev] != r) {
        out.push_back({Payload::Kind::kActivation, prev, t.stage, t.microbatch});
      }
    } else if (t.op == Op::kBackward || t.op == Op::kInputGrad) {
      int next = routes.Next(t.stage, t.microbatch);
      if (next >= 0 && s.placement[next] != r) {
        out.push_back({Payload::Kind::kGradient, next, t.stage, t.microbatch});
      }
    }
  }
  return out;
}

bool Carries(const Pairing& p, int r, int j, const Payload& want) {
  if (p.payload[r][j] == want) return true;
  const Ep other = p.partner[r][j];
  return other.rank >= 0 && p.payload[other.rank][other.index] == want;
}

bool HasWait(const std::vector<Action>& program) {
  return std::any_of(program.begin(), program.end(),
                     [](const Action& a) { return a.op == Op::kWait; });
}

}  // namespace

bool TruthStructure(const Schedule& s) {
  if (static_cast<int>(s.program.size()) != s.ranks) return false;
  RouteIndex routes(s);
  std::map<std::tuple<int, int, Op>, int> count;
  for (int r = 0; r < s.ranks; ++r) {
    for (const Action& a : s.program[r]) {
      if (IsDataParallel(a.op)) {  // names a stage of its rank and no microbatch
        if (a.stage < 0 || a.stage >= s.stages || s.placement[a.stage] != r) return false;
        continue;
      }
      for (int k = 0; k < a.TaskCount(); ++k) {
        const Task t = a.TaskAt(k);
        if (t.stage < 0 || t.stage >= s.stages || t.microbatch < 0 ||
            t.microbatch >= s.microbatches || !routes.OnRoute(t.stage, t.microbatch) ||
            s.placement[t.stage] != r) {
          return false;
        }
        if (IsComm(t.op)) {
          auto m = MessageOf(s, routes, t);
          if (!m || m->peer == r) return false;
        } else {
          ++count[{t.stage, t.microbatch, t.op}];
        }
      }
    }
  }
  for (int m = 0; m < s.microbatches; ++m) {
    for (int st : s.routes[m]) {
      auto n = [&](Op op) {
        auto it = count.find({st, m, op});
        return it == count.end() ? 0 : it->second;
      };
      const bool full = n(Op::kBackward) == 1 && n(Op::kInputGrad) == 0 && n(Op::kWeightGrad) == 0;
      const bool split = n(Op::kBackward) == 0 && n(Op::kInputGrad) == 1 && n(Op::kWeightGrad) == 1;
      if (n(Op::kForward) != 1 || !(full || split)) return false;
    }
  }
  return true;
}

bool TruthMatching(const Schedule& s) {
  const Pairing p = Pair(s);
  for (int r = 0; r < s.ranks; ++r) {
    for (int i = 0; i < Size(s.program[r]); ++i) {
      if (!p.payload[r][i]) continue;
      const Ep other = p.partner[r][i];
      if (other.rank < 0 || p.payload[other.rank][other.index] != p.payload[r][i]) return false;
    }
  }
  return true;
}

bool TruthDependencies(const Schedule& s) {
  const RouteIndex routes(s);
  const Pairing p = Pair(s);
  for (int q = 0; q < s.ranks; ++q) {
    const auto& program = s.program[q];
    const bool grouped = HasWait(program);
    for (int i = 0; i < Size(program); ++i) {
      const Action& a = program[i];
      if (IsSend(a.op) && p.payload[q][i]) {
        // A SEND after what it, or its partner, names.
        bool made = false;
        std::vector<Payload> named{*p.payload[q][i]};
        const Ep other = p.partner[q][i];
        if (other.rank >= 0) named.push_back(*p.payload[other.rank][other.index]);
        for (const Payload& x : named) {
          if (s.placement[x.from] != q) continue;
          const Pass pass = x.kind == Payload::Kind::kActivation ? Pass::kForward : Pass::kBackward;
          const int at = ProducerIndex(s, pass, x.from, x.microbatch);
          made = made || (at >= 0 && at < i);
        }
        if (!made) return false;
      }
      if (!IsCompute(a.op)) continue;
      for (int k = 0; k < a.TaskCount(); ++k) {
        const Task t = a.TaskAt(k);
        for (const PassKey& need : Needs(t, routes)) {
          const int at = ProducerIndex(s, need.pass, need.stage, need.microbatch);
          if (s.placement[need.stage] == q) {
            if (at < 0 || at >= i) return false;
          }
        }
      }
      for (const Payload& want : RemoteInputs(s, routes, q, i)) {
        const Pass pass =
            want.kind == Payload::Kind::kActivation ? Pass::kForward : Pass::kBackward;
        const int made = ProducerIndex(s, pass, want.from, want.microbatch);
        bool arrived = false;
        for (int j = 0; j < i && !arrived; ++j) {
          if (!IsRecv(program[j].op) || !p.payload[q][j] || !Carries(p, q, j, want)) continue;
          bool completed = !grouped;
          for (int w = j + 1; w < i && !completed; ++w) completed = program[w].op == Op::kWait;
          const Ep send = p.partner[q][j];
          arrived = completed && send.rank >= 0 && made >= 0 && send.index > made;
        }
        if (!arrived) return false;
      }
    }
  }
  return true;
}

// The program run step by step. Each rank's host walks its actions: a compute runs when it may
// (without WAITs: once the receives bringing its inputs are complete), a SEND/RECV is posted
// (without WAITs: at once, as a unit of its own; with WAITs: collected into the group that the
// next WAIT posts, the WAIT then holding the host until the group completes), a WAIT_SEND holds
// the host until its SEND has completed, and a data-parallel action is passed over (it uses
// another communicator). nccl: a lone unit queues on the stream that carries it (one per rank,
// per peer, or per peer and direction) and runs only at the front of that queue, while a group
// runs as soon as it is posted (its rank has nothing else in flight); an op completes when its
// partner's unit is running too; under the pair layout a host that meets a peer for the first
// time stays there until that peer has met it too. eager: every posted unit runs; a send
// completes at once, a receive once its send is posted.
bool TruthRunsToEnd(const Schedule& s, CommModel model, StreamLayout streams) {
  const RouteIndex routes(s);
  const Pairing p = Pair(s);
  const bool nccl = model == CommModel::kNccl;
  struct UnitState {
    int rank;
    std::vector<int> ops;
    int queue;  // into `queues`, -1 for a group
  };
  std::vector<UnitState> units;
  std::vector<std::vector<int>> unit_of(s.ranks);  // op -> unit, -1 until posted
  std::vector<std::vector<bool>> op_done(s.ranks);
  std::map<std::tuple<int, int, int>, int> queue_id;  // (rank, peer, direction) -> queue
  std::vector<std::deque<int>> queues;                // posted, incomplete lone units in order
  std::vector<int> pc(s.ranks, 0);
  std::vector<std::vector<int>> pending(s.ranks);
  std::vector<int> waiting_on(s.ranks, -1);  // the unit a WAIT holds the host for
  for (int r = 0; r < s.ranks; ++r) {
    unit_of[r].assign(s.program[r].size(), -1);
    op_done[r].assign(s.program[r].size(), false);
  }
  auto unit_done = [&](int u) {
    for (int op : units[u].ops) {
      if (!op_done[units[u].rank][op]) return false;
    }
    return true;
  };
  // The queue of a lone op: what the layout keeps apart gets a queue of its own.
  auto queue_of = [&](int r, int op) {
    const int peer = p.peer[r][op];
    const int direction = IsSend(s.program[r][op].op) ? 1 : 0;
    const std::tuple<int, int, int> key = streams == StreamLayout::kRank ? std::tuple{r, -1, -1}
                                          : streams == StreamLayout::kPair
                                              ? std::tuple{r, peer, -1}
                                              : std::tuple{r, peer, direction};
    auto [it, inserted] = queue_id.try_emplace(key, static_cast<int>(queues.size()));
    if (inserted) queues.emplace_back();
    return it->second;
  };
  // Pair layout: set-ups are between hosts, which do not wait for their devices. Each host meets
  // its peers unit by unit; at a unit with new peers it stays until each of them has come to its
  // own first unit with it. Played to the end first: `stuck_at[r]` is where rank r's host stays
  // for ever (past the end when it gets through).
  std::vector<int> stuck_at(s.ranks, std::numeric_limits<int>::max());
  if (nccl && streams == StreamLayout::kPair) {
    std::vector<std::vector<std::pair<int, std::set<int>>>> firsts(s.ranks);  // (at, new peers)
    for (int r = 0; r < s.ranks; ++r) {
      const auto& program = s.program[r];
      const bool grouped = HasWait(program);
      std::set<int> seen, group;
      for (int i = 0; i < Size(program); ++i) {
        if (IsComm(program[i].op)) group.insert(p.peer[r][i]);
        const bool unit_ends = grouped ? program[i].op == Op::kWait : IsComm(program[i].op);
        if (!unit_ends || group.empty()) continue;
        std::set<int> fresh;
        for (int q : group) {
          if (seen.insert(q).second) fresh.insert(q);
        }
        if (!fresh.empty()) firsts[r].push_back({i, fresh});
        group.clear();
      }
    }
    std::vector<size_t> at(s.ranks, 0);
    std::set<std::pair<int, int>> came;  // (rank, peer): rank's host came to its unit with peer
    bool moved = true;
    while (moved) {
      moved = false;
      for (int r = 0; r < s.ranks; ++r) {
        if (at[r] == firsts[r].size()) continue;
        const std::set<int>& peers = firsts[r][at[r]].second;
        for (int q : peers) came.insert({r, q});
        if (std::all_of(peers.begin(), peers.end(), [&](int q) { return came.count({q, r}); })) {
          ++at[r];
          moved = true;
        }
      }
    }
    for (int r = 0; r < s.ranks; ++r) {
      if (at[r] < firsts[r].size()) stuck_at[r] = firsts[r][at[r]].first;
    }
  }
  auto post = [&](int r, std::vector<int> ops, bool grouped) {
    const int queue = grouped ? -1 : queue_of(r, ops.front());
    units.push_back({r, std::move(ops), queue});
    const int u = static_cast<int>(units.size() - 1);
    for (int op : units[u].ops) unit_of[r][op] = u;
    if (queue >= 0) queues[queue].push_back(u);
    return u;
  };
  auto running = [&](int u) {
    if (!nccl || units[u].queue < 0) return true;
    const std::deque<int>& q = queues[units[u].queue];
    return !q.empty() && q.front() == u;
  };
  // The SEND a WAIT_SEND at (r, i) waits for: the last one before it with its stage,
  // microbatch and direction.
  auto waited_send = [&](int r, int i) {
    const Action& w = s.program[r][i];
    const Op send = w.op == Op::kWaitSendF ? Op::kSendF : Op::kSendB;
    for (int j = i - 1; j >= 0; --j) {
      const Action& a = s.program[r][j];
      if (a.op == send && a.stage == w.stage && a.microbatch == w.microbatch) return j;
    }
    return -1;
  };
  bool progress = true;
  while (progress) {
    progress = false;
    for (int r = 0; r < s.ranks; ++r) {
      const auto& program = s.program[r];
      const bool grouped = HasWait(program);
      while (pc[r] < Size(program) && pc[r] < stuck_at[r]) {  // the host
        const Action& a = program[pc[r]];
        if (IsCompute(a.op)) {
          if (!grouped) {
            bool ready = true;
            for (const Payload& want : RemoteInputs(s, routes, r, pc[r])) {
              for (int j = 0; j < pc[r]; ++j) {
                // The RECV named for the input, as PyTorch's runtime waits for it.
                if (IsRecv(program[j].op) && p.payload[r][j] && *p.payload[r][j] == want) {
                  ready = ready && op_done[r][j];
                }
              }
            }
            if (!ready) break;
          }
        } else if (IsComm(a.op)) {
          if (grouped) {
            pending[r].push_back(pc[r]);
          } else {
            post(r, {pc[r]}, false);
          }
        } else if (IsWaitSend(a.op)) {
          const int send = waited_send(r, pc[r]);
          if (send < 0 || !op_done[r][send]) break;  // not posted yet, or still running
        } else if (a.op == Op::kWait && (!pending[r].empty() || waiting_on[r] >= 0)) {
          if (waiting_on[r] < 0) {
            waiting_on[r] = post(r, pending[r], true);
            pending[r].clear();
            progress = true;
          }
          if (!unit_done(waiting_on[r])) break;
          waiting_on[r] = -1;
        }  // else: a WAIT with nothing to post, a data-parallel action
        ++pc[r];
        progress = true;
      }
    }
    for (int u = 0; u < static_cast<int>(units.size()); ++u) {  // the communication
      if (!running(u)) continue;
      const int r = units[u].rank;
      for (int op : units[u].ops) {
        if (op_done[r][op]) continue;
        const Ep other = p.partner[r][op];
        const bool send = IsSend(s.program[r][op].op);
        const bool other_posted = other.rank >= 0 && unit_of[other.rank][other.index] >= 0;
        const bool complete =
            nccl ? other_posted && running(unit_of[other.rank][other.index]) : send || other_posted;
        if (complete) {
          op_done[r][op] = true;
          // A rendezvous completes both ends at once.
          if (nccl) op_done[other.rank][other.index] = true;
          progress = true;
        }
      }
    }
    for (std::deque<int>& q : queues) {
      while (!q.empty() && unit_done(q.front())) {
        q.pop_front();
        progress = true;
      }
      if (!nccl) std::erase_if(q, unit_done);
    }
  }
  for (int r = 0; r < s.ranks; ++r) {
    if (pc[r] < Size(s.program[r]) || !pending[r].empty()) return false;
  }
  for (int u = 0; u < static_cast<int>(units.size()); ++u) {
    if (!unit_done(u)) return false;
  }
  return true;
}

int TruthPeakActivations(const Schedule& s) {
  int peak = 0;
  for (const auto& program : s.program) {
    int live = 0;
    for (const Action& a : program) {
      for (int k = 0; k < a.TaskCount(); ++k) {
        const Op op = a.TaskAt(k).op;
        live += op == Op::kForward ? 1 : (op == Op::kBackward || op == Op::kInputGrad) ? -1 : 0;
        peak = std::max(peak, live);
      }
    }
  }
  return peak;
}

int TruthKindBound(const Schedule& s) {
  if (s.kind == "dualpipe" || s.kind == "dualpipev")
    return static_cast<int>(s.routes[0].size()) + 1;
  if (s.kind == "1f1b" || s.kind == "zb1p") return s.ranks;
  if (s.kind == "gpipe") return s.microbatches;
  if (s.kind == "interleaved-1f1b") {
    const int v = s.stages / s.ranks;
    return std::min(s.microbatches * v, v == 1 ? s.ranks : (v + 1) * s.ranks - 1);
  }
  return -1;
}

std::vector<std::string> TruthFailedChecks(const Schedule& s, CommModel model,
                                           StreamLayout streams) {
  if (!TruthStructure(s)) return {"structure"};
  std::vector<std::string> out;
  if (!TruthDependencies(s)) out.push_back("dependencies");
  if (!TruthMatching(s)) out.push_back("matching");
  if (!TruthRunsToEnd(s, model, streams)) out.push_back("deadlock");
  const int bound = TruthKindBound(s);
  if (bound >= 0 && TruthPeakActivations(s) > bound) out.push_back("memory");
  return out;
}

// ---- mutations

const std::vector<Mutation>& AllMutations() {
  static const std::vector<Mutation> all = {
      Mutation::kDropCompute,      Mutation::kDropComm,       Mutation::kDropWait,
      Mutation::kDuplicateCompute, Mutation::kDuplicateComm,  Mutation::kSwapAdjacent,
      Mutation::kSwapAny,          Mutation::kSendMicrobatch, Mutation::kRecvMicrobatch,
      Mutation::kCommAcrossWait,   Mutation::kMoveWait,       Mutation::kSwapSendRecv,
      Mutation::kWrongRank,        Mutation::kIWithoutW,      Mutation::kStripWaits,
      Mutation::kStripAllWaits,    Mutation::kShuffleRank};
  return all;
}

std::string MutationName(Mutation m) {
  switch (m) {
    case Mutation::kDropCompute:
      return "drop a compute";
    case Mutation::kDropComm:
      return "drop a SEND/RECV";
    case Mutation::kDropWait:
      return "drop a WAIT";
    case Mutation::kDuplicateCompute:
      return "duplicate a compute";
    case Mutation::kDuplicateComm:
      return "duplicate a SEND/RECV";
    case Mutation::kSwapAdjacent:
      return "swap two adjacent actions";
    case Mutation::kSwapAny:
      return "swap two actions";
    case Mutation::kSendMicrobatch:
      return "wrong microbatch in a SEND";
    case Mutation::kRecvMicrobatch:
      return "wrong microbatch in a RECV";
    case Mutation::kCommAcrossWait:
      return "move a SEND/RECV across a WAIT";
    case Mutation::kMoveWait:
      return "move a WAIT";
    case Mutation::kSwapSendRecv:
      return "swap a SEND and a RECV";
    case Mutation::kWrongRank:
      return "action on the wrong rank";
    case Mutation::kIWithoutW:
      return "I without W";
    case Mutation::kStripWaits:
      return "remove a rank's WAITs";
    case Mutation::kStripAllWaits:
      return "remove every WAIT";
    case Mutation::kShuffleRank:
      return "shuffle a rank's program";
  }
  return "?";
}

namespace {

int Draw(std::mt19937& rng, int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); }

// A random position on a random rank whose action satisfies `want`, or {-1, -1}.
template <typename F>
std::pair<int, int> Pick(const Schedule& s, std::mt19937& rng, F want) {
  std::vector<std::pair<int, int>> all;
  for (int r = 0; r < s.ranks; ++r) {
    for (int i = 0; i < Size(s.program[r]); ++i) {
      if (want(s.program[r][i])) all.push_back({r, i});
    }
  }
  if (all.empty()) return {-1, -1};
  return all[Draw(rng, static_cast<int>(all.size()))];
}

}  // namespace

bool Mutate(Schedule& s, Mutation m, std::mt19937& rng) {
  auto erase = [&](int r, int i) { s.program[r].erase(s.program[r].begin() + i); };
  auto insert = [&](int r, int i, const Action& a) {
    s.program[r].insert(s.program[r].begin() + i, a);
  };
  switch (m) {
    case Mutation::kDropCompute:
    case Mutation::kDropComm:
    case Mutation::kDropWait: {
      auto [r, i] = Pick(s, rng, [&](const Action& a) {
        return m == Mutation::kDropCompute ? IsCompute(a.op)
               : m == Mutation::kDropComm  ? IsComm(a.op)
                                           : a.op == Op::kWait;
      });
      if (r < 0) return false;
      erase(r, i);
      return true;
    }
    case Mutation::kDuplicateCompute:
    case Mutation::kDuplicateComm: {
      auto [r, i] = Pick(s, rng, [&](const Action& a) {
        return m == Mutation::kDuplicateCompute ? IsCompute(a.op) : IsComm(a.op);
      });
      if (r < 0) return false;
      insert(r, i + Draw(rng, Size(s.program[r]) - i) + 1, s.program[r][i]);
      return true;
    }
    case Mutation::kSwapAdjacent: {
      auto [r, i] = Pick(s, rng, [](const Action&) { return true; });
      if (r < 0 || i + 1 >= Size(s.program[r])) return false;
      if (s.program[r][i] == s.program[r][i + 1]) return false;
      std::swap(s.program[r][i], s.program[r][i + 1]);
      return true;
    }
    case Mutation::kSwapAny: {
      auto [r, i] = Pick(s, rng, [](const Action&) { return true; });
      if (r < 0) return false;
      const int j = Draw(rng, Size(s.program[r]));
      if (s.program[r][i] == s.program[r][j]) return false;
      std::swap(s.program[r][i], s.program[r][j]);
      return true;
    }
    case Mutation::kSendMicrobatch:
    case Mutation::kRecvMicrobatch: {
      auto [r, i] = Pick(s, rng, [&](const Action& a) {
        return m == Mutation::kSendMicrobatch ? IsSend(a.op) : IsRecv(a.op);
      });
      if (r < 0) return false;
      Action& a = s.program[r][i];
      // Another microbatch that passes the same stage, so the action stays well formed.
      RouteIndex routes(s);
      std::vector<int> others;
      for (int mb = 0; mb < s.microbatches; ++mb) {
        if (mb != a.microbatch && routes.OnRoute(a.stage, mb) &&
            MessageOf(s, routes, Task{a.op, a.stage, mb})) {
          others.push_back(mb);
        }
      }
      if (others.empty()) return false;
      a.microbatch = others[Draw(rng, static_cast<int>(others.size()))];
      return true;
    }
    case Mutation::kCommAcrossWait: {
      auto [r, i] = Pick(s, rng, [](const Action& a) { return IsComm(a.op); });
      if (r < 0) return false;
      auto& program = s.program[r];
      const bool later = Draw(rng, 2) == 0;
      int w = i;
      if (later) {
        while (w < Size(program) && program[w].op != Op::kWait) ++w;
        if (w >= Size(program)) return false;
        const Action a = program[i];
        program.insert(program.begin() + w + 1, a);
        program.erase(program.begin() + i);
      } else {
        while (w >= 0 && program[w].op != Op::kWait) --w;
        if (w < 0) return false;
        const Action a = program[i];
        program.erase(program.begin() + i);
        program.insert(program.begin() + w, a);
      }
      return true;
    }
    case Mutation::kMoveWait: {
      auto [r, i] = Pick(s, rng, [](const Action& a) { return a.op == Op::kWait; });
      if (r < 0) return false;
      erase(r, i);
      const int to = Draw(rng, Size(s.program[r]) + 1);
      if (to == i) return false;
      insert(r, to, Action::Wait());
      return true;
    }
    case Mutation::kSwapSendRecv: {
      // A SEND and the nearest RECV after it on the same rank trade places.
      auto [r, i] = Pick(s, rng, [](const Action& a) { return IsSend(a.op); });
      if (r < 0) return false;
      auto& program = s.program[r];
      for (int j = i + 1; j < Size(program); ++j) {
        if (IsRecv(program[j].op)) {
          std::swap(program[i], program[j]);
          return true;
        }
      }
      return false;
    }
    case Mutation::kWrongRank: {
      if (s.ranks < 2) return false;
      auto [r, i] = Pick(s, rng, [](const Action& a) { return a.op != Op::kWait; });
      if (r < 0) return false;
      const Action a = s.program[r][i];
      erase(r, i);
      const int to = (r + 1 + Draw(rng, s.ranks - 1)) % s.ranks;
      insert(to, Draw(rng, Size(s.program[to]) + 1), a);
      return true;
    }
    case Mutation::kIWithoutW: {
      // Either a full backward becomes an input-gradient one, or a W disappears.
      auto [r, i] = Pick(s, rng, [](const Action& a) {
        return a.op == Op::kBackward || a.op == Op::kWeightGrad ||
               (a.op == Op::kOverlapFB && a.back.op == Op::kBackward);
      });
      if (r < 0) return false;
      Action& a = s.program[r][i];
      if (a.op == Op::kWeightGrad) {
        erase(r, i);
      } else if (a.op == Op::kBackward) {
        a.op = Op::kInputGrad;
      } else {
        a.back.op = Op::kInputGrad;
      }
      return true;
    }
    case Mutation::kStripWaits: {
      auto [r, i] = Pick(s, rng, [](const Action& a) { return a.op == Op::kWait; });
      if (r < 0) return false;
      std::erase_if(s.program[r], [](const Action& a) { return a.op == Op::kWait; });
      return true;
    }
    case Mutation::kShuffleRank: {
      const int r = Draw(rng, s.ranks);
      if (s.program[r].size() < 2) return false;
      std::shuffle(s.program[r].begin(), s.program[r].end(), rng);
      return true;
    }
    case Mutation::kStripAllWaits: {
      bool any = false;
      for (auto& program : s.program) {
        if (std::erase_if(program, [](const Action& a) { return a.op == Op::kWait; }) > 0)
          any = true;
      }
      return any;
    }
  }
  return false;
}

}  // namespace pipeproof::testing
