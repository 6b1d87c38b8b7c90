#include "fuzz/schedule_truth.h"

#include <algorithm>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <tuple>

namespace pipeproof::truth {
namespace {

// ---- the topology, looked up the slow and obvious way

int RoutePosition(const Schedule& s, int stage, int mb) {
  const std::vector<int>& route = s.routes[mb];
  const auto it = std::find(route.begin(), route.end(), stage);
  return it == route.end() ? -1 : static_cast<int>(it - route.begin());
}

// The stage before (dir -1) or after (dir +1) `stage` on microbatch mb's route; -1 if none.
int Neighbour(const Schedule& s, int stage, int mb, int dir) {
  const int pos = RoutePosition(s, stage, mb);
  const int at = pos + dir;
  if (pos < 0 || at < 0 || at >= static_cast<int>(s.routes[mb].size())) return -1;
  return s.routes[mb][at];
}

// What a message holds: kind 'A' (activation) or 'G' (gradient), from stage, to stage, mb.
using Payload = std::tuple<char, int, int, int>;

struct Named {
  Payload payload;
  int peer = -1;  // the rank at the other end
};

// What a SEND/RECV task names and whom it talks to; nullopt without a neighbour.
std::optional<Named> Names(const Schedule& s, const Task& t) {
  const int s0 = t.stage, m = t.microbatch;
  int other = -1;
  Payload p;
  switch (t.op) {
    case Op::kSendF: other = Neighbour(s, s0, m, +1); p = {'A', s0, other, m}; break;
    case Op::kRecvF: other = Neighbour(s, s0, m, -1); p = {'A', other, s0, m}; break;
    case Op::kSendB: other = Neighbour(s, s0, m, -1); p = {'G', s0, other, m}; break;
    case Op::kRecvB: other = Neighbour(s, s0, m, +1); p = {'G', other, s0, m}; break;
    default: return std::nullopt;
  }
  if (other < 0) return std::nullopt;
  return Named{p, s.placement[other]};
}

std::vector<Task> Tasks(const Action& a) {
  std::vector<Task> out;
  for (int k = 0; k < a.TaskCount(); ++k) out.push_back(a.TaskAt(k));
  return out;
}

bool InRange(const Schedule& s, const Task& t) {
  return t.stage >= 0 && t.stage < s.stages && t.microbatch >= 0 && t.microbatch < s.microbatches;
}

bool HasWait(const std::vector<Action>& program) {
  for (const Action& a : program) {
    if (a.op == Op::kWait) return true;
  }
  return false;
}

// The FIFO pairing: for every SEND/RECV, its partner (rank, index) or (-1, -1).
struct Pairing {
  std::map<std::pair<int, int>, std::pair<int, int>> partner;
  std::pair<int, int> Of(int rank, int index) const {
    auto it = partner.find({rank, index});
    return it == partner.end() ? std::pair{-1, -1} : it->second;
  }
};

Pairing PairMessages(const Schedule& s) {
  std::map<std::pair<int, int>, std::vector<int>> sends, recvs;  // (from, to) -> indices
  for (int r = 0; r < s.ranks; ++r) {
    for (int i = 0; i < static_cast<int>(s.program[r].size()); ++i) {
      const Action& a = s.program[r][i];
      if (!IsComm(a.op)) continue;
      const Named n = *Names(s, a.TaskAt(0));
      if (IsSend(a.op)) {
        sends[{r, n.peer}].push_back(i);
      } else {
        recvs[{n.peer, r}].push_back(i);
      }
    }
  }
  Pairing p;
  for (const auto& [channel, list] : sends) {
    const std::vector<int>& other = recvs[channel];
    for (size_t k = 0; k < list.size() && k < other.size(); ++k) {
      p.partner[{channel.first, list[k]}] = {channel.second, other[k]};
      p.partner[{channel.second, other[k]}] = {channel.first, list[k]};
    }
  }
  return p;
}

// What a rank has computed: ('F' | 'B' | 'I', stage, mb), B and I both marking the backward.
using Done = std::tuple<char, int, int>;

// What a compute task needs: the results made on its own rank, and the payloads from others.
struct Inputs {
  std::vector<Done> local;
  std::vector<Payload> remote;
};

Inputs InputsOf(const Schedule& s, int r, const Task& t) {
  Inputs out;
  const int st = t.stage, m = t.microbatch;
  if (t.op == Op::kForward) {
    const int prev = Neighbour(s, st, m, -1);
    if (prev >= 0 && s.placement[prev] == r) out.local.push_back({'F', prev, m});
    if (prev >= 0 && s.placement[prev] != r) out.remote.push_back({'A', prev, st, m});
  } else if (t.op == Op::kBackward || t.op == Op::kInputGrad) {
    out.local.push_back({'F', st, m});
    const int next = Neighbour(s, st, m, +1);
    if (next >= 0 && s.placement[next] == r) out.local.push_back({'B', next, m});
    if (next >= 0 && s.placement[next] != r) out.remote.push_back({'G', next, st, m});
  } else if (t.op == Op::kWeightGrad) {
    out.local.push_back({'I', st, m});
  }
  return out;
}

// What made a payload, on the rank of the stage it comes from.
Done MakerOf(const Payload& p) {
  const auto [kind, from, to, m] = p;
  return {kind == 'A' ? 'F' : 'B', from, m};
}

// The position of the first compute that makes `d` on the rank of d's stage, or -1.
int MadeAt(const Schedule& s, const Done& d) {
  const auto [what, stage, m] = d;
  const std::vector<Action>& program = s.program[s.placement[stage]];
  for (int i = 0; i < static_cast<int>(program.size()); ++i) {
    for (const Task& t : Tasks(program[i])) {
      if (t.stage != stage || t.microbatch != m) continue;
      const bool makes = what == 'F'   ? t.op == Op::kForward
                         : what == 'B' ? t.op == Op::kBackward || t.op == Op::kInputGrad
                                       : t.op == Op::kInputGrad;
      if (makes) return i;
    }
  }
  return -1;
}

// The RECVs before index `before` on rank r that bring `p`: those naming it, and those whose
// partner SEND names it. The two differ only where a message is mislabelled, which breaks
// matching anyway; a compute on a rank without WAITs waits only for the one naming it.
std::vector<int> ReceivesOf(const Schedule& s, const Pairing& pairs, int r, int before,
                            const Payload& p) {
  std::vector<int> out;
  for (int j = 0; j < before; ++j) {
    const Action& a = s.program[r][j];
    if (!IsRecv(a.op)) continue;
    const auto [pr, pi] = pairs.Of(r, j);
    const bool sent_as_p = pr >= 0 && Names(s, s.program[pr][pi].TaskAt(0))->payload == p;
    if (Names(s, a.TaskAt(0))->payload == p || sent_as_p) out.push_back(j);
  }
  return out;
}

}  // namespace

std::string Verdict::Describe() const {
  if (sound()) return "sound";
  std::string out;
  auto add = [&](bool ok, const char* name) {
    if (!ok) out += (out.empty() ? "" : ", ") + std::string(name);
  };
  add(structure, "structure");
  add(dependencies, "dependencies");
  add(matching, "matching");
  add(inputs, "inputs");
  add(runs_to_end, "runs_to_end");
  add(memory, "memory");
  return out;
}

std::vector<std::string> Verdict::FailingChecks() const {
  if (!structure) return {"structure"};
  std::vector<std::string> out;
  if (!dependencies) out.push_back("dependencies");
  if (!matching) out.push_back("matching");
  if (!runs_to_end) out.push_back("deadlock");
  if (!memory) out.push_back("memory");
  return out;
}

namespace {

// PyTorch's runtime actions in their order on rank r: each WAIT_SEND after a SEND of its stage,
// microbatch and direction that no WAIT_SEND took yet; a stage computing only while gathered
// (after an UNSHARD and before the next RESHARD, for a stage that has UNSHARDs anywhere) and never
// after its REDUCE_GRAD; a REDUCE_GRAD once per stage, never while another one of the rank is
// waiting for its WAIT_REDUCE_GRAD, and always waited for.
bool RuntimeOrderHolds(const Schedule& s, int r) {
  std::set<int> unsharded_somewhere;
  for (const auto& program : s.program) {
    for (const Action& a : program) {
      if (a.op == Op::kUnshard) unsharded_somewhere.insert(a.stage);
    }
  }
  std::multiset<std::tuple<Op, int, int>> unwaited_sends;
  std::set<int> gathered, reduced;
  int pending = -1;  // the stage whose reduction is not waited for yet
  auto is_gathered = [&](int stage) {
    return !unsharded_somewhere.count(stage) ? !gathered.count(-1 - stage) : gathered.count(stage) > 0;
  };
  for (const Action& a : s.program[r]) {
    if (IsSend(a.op)) {
      unwaited_sends.insert({a.op, a.stage, a.microbatch});
    } else if (IsWaitSend(a.op)) {
      auto it = unwaited_sends.find({SentBy(a.op), a.stage, a.microbatch});
      if (it == unwaited_sends.end()) return false;
      unwaited_sends.erase(it);
    } else if (IsCompute(a.op)) {
      for (const Task& t : Tasks(a)) {
        if (!is_gathered(t.stage) || reduced.count(t.stage)) return false;
      }
    } else if (a.op == Op::kUnshard) {
      if (is_gathered(a.stage)) return false;
      gathered.insert(a.stage);
    } else if (a.op == Op::kReshard) {
      if (!is_gathered(a.stage)) return false;
      gathered.erase(a.stage);
      gathered.insert(-1 - a.stage);  // a stage without UNSHARDs stays dropped
    } else if (a.op == Op::kReduceGrad) {
      if (pending >= 0 || reduced.count(a.stage)) return false;
      reduced.insert(a.stage);
      pending = a.stage;
    } else if (a.op == Op::kWaitReduceGrad) {
      if (pending != a.stage) return false;
      pending = -1;
    }
  }
  return pending < 0;
}

}  // namespace

bool StructureHolds(const Schedule& s) {
  if (static_cast<int>(s.program.size()) != s.ranks) return false;
  if (static_cast<int>(s.placement.size()) != s.stages || static_cast<int>(s.routes.size()) != s.microbatches) {
    return false;
  }
  std::map<std::tuple<Op, int, int>, int> count;
  for (int r = 0; r < s.ranks; ++r) {
    for (const Action& a : s.program[r]) {
      if (IsDataParallel(a.op)) {  // names a stage of the rank, no microbatch
        if (a.stage < 0 || a.stage >= s.stages || s.placement[a.stage] != r) return false;
        continue;
      }
      for (const Task& t : Tasks(a)) {
        if (!InRange(s, t) || RoutePosition(s, t.stage, t.microbatch) < 0 || s.placement[t.stage] != r) return false;
        if (IsComm(t.op)) {
          const std::optional<Named> n = Names(s, t);
          if (!n || n->peer == r) return false;
        } else {
          ++count[{t.op, t.stage, t.microbatch}];
        }
      }
    }
  }
  for (int m = 0; m < s.microbatches; ++m) {
    for (int stage : s.routes[m]) {
      auto n = [&](Op op) { return count[{op, stage, m}]; };
      const bool full = n(Op::kBackward) == 1 && n(Op::kInputGrad) == 0 && n(Op::kWeightGrad) == 0;
      const bool split = n(Op::kBackward) == 0 && n(Op::kInputGrad) == 1 && n(Op::kWeightGrad) == 1;
      if (n(Op::kForward) != 1 || !(full || split)) return false;
    }
  }
  for (int r = 0; r < s.ranks; ++r) {
    if (!RuntimeOrderHolds(s, r)) return false;
  }
  return true;
}

bool MessagesMatch(const Schedule& s) {
  const Pairing pairs = PairMessages(s);
  for (int r = 0; r < s.ranks; ++r) {
    for (int i = 0; i < static_cast<int>(s.program[r].size()); ++i) {
      const Action& a = s.program[r][i];
      if (!IsComm(a.op)) continue;
      const auto [pr, pi] = pairs.Of(r, i);
      if (pr < 0) return false;  // left over
      if (Names(s, a.TaskAt(0))->payload != Names(s, s.program[pr][pi].TaskAt(0))->payload) return false;
    }
  }
  return true;
}

// The program text alone, as the verifier's dependencies check reads it, so that a rank that
// hangs is still judged past the point where it hangs. A remote input comes by a RECV written
// before the compute and bringing it (by its own name or its partner's), whose partner SEND
// stands after the input is made and which has completed when the compute runs: on a rank with
// WAITs a WAIT lies between the two; without WAITs the compute waits for it. A SEND stands after
// what it names is made on its rank (it reads that buffer, whatever its partner expects).
bool DependenciesHold(const Schedule& s) {
  const Pairing pairs = PairMessages(s);
  for (int r = 0; r < s.ranks; ++r) {
    const std::vector<Action>& program = s.program[r];
    const bool grouped = HasWait(program);
    for (int i = 0; i < static_cast<int>(program.size()); ++i) {
      const Action& a = program[i];
      if (IsSend(a.op)) {
        const Done maker = MakerOf(Names(s, a.TaskAt(0))->payload);
        const int at = s.placement[std::get<1>(maker)] == r ? MadeAt(s, maker) : -1;
        if (at < 0 || at >= i) return false;
      }
      if (!IsCompute(a.op)) continue;
      for (const Task& t : Tasks(a)) {
        const Inputs need = InputsOf(s, r, t);
        for (const Done& d : need.local) {
          const int at = MadeAt(s, d);
          if (at < 0 || at >= i) return false;
        }
        for (const Payload& p : need.remote) {
          const int made = MadeAt(s, MakerOf(p));
          bool arrived = false;
          for (int j : ReceivesOf(s, pairs, r, i, p)) {
            bool completed = !grouped;
            for (int w = j + 1; w < i && !completed; ++w) completed = program[w].op == Op::kWait;
            const auto [sr, si] = pairs.Of(r, j);
            arrived = arrived || (completed && sr >= 0 && made >= 0 && si > made);
          }
          if (!arrived) return false;
        }
      }
    }
  }
  return true;
}

// The step-by-step run. Each rank's host walks its program; a rank with WAITs collects its
// SEND/RECVs and posts them as one unit at the next WAIT, which then holds the host until that
// unit completes; a rank without WAITs posts each SEND/RECV as a unit where it stands and a
// compute holds the host until the RECVs before it that bring its inputs are done. A WAIT_SEND
// holds the host until its SEND is done. Posted units queue on streams: nccl, one queue per rank
// (rank layout), per rank and peer (pair) or per rank, peer and direction (edge), and only the
// front unit of a queue runs; an op completes together with its partner when the partner's unit
// runs too. eager: every posted unit runs, a send completes when posted, a receive when its send
// is posted. Under nccl and the pair layout, a host that reaches its first op with a peer stays
// there until that peer's host has reached its own first op with it; hosts run ahead of their
// devices, so only earlier set-ups keep a host from a first contact.
Verdict Run(const Schedule& s, CommModel model, StreamLayout layout) {
  Verdict v;
  const Pairing pairs = PairMessages(s);
  const int n = s.ranks;
  struct Unit {
    int rank = 0;
    std::vector<int> ops;
    std::pair<int, int> queue;  // (rank, stream)
  };
  std::vector<Unit> units;
  std::map<std::pair<int, int>, int> unit_of;  // posted op -> its unit
  std::set<std::pair<int, int>> op_done;
  std::map<std::pair<int, int>, std::deque<int>> queues;  // posted units not yet complete
  std::vector<int> pc(n, 0);
  std::vector<std::vector<int>> collected(n);  // a grouped rank's ops since its last WAIT
  std::vector<int> held_by(n, -1);             // the unit a WAIT is waiting for
  std::vector<std::set<Done>> done(n);
  const bool setup = model == CommModel::kNccl && layout == StreamLayout::kPair;

  auto unit_complete = [&](int u) {
    for (int op : units[u].ops) {
      if (!op_done.count({units[u].rank, op})) return false;
    }
    return true;
  };
  auto peer_of = [&](int r, int op) { return Names(s, s.program[r][op].TaskAt(0))->peer; };
  // The queue a unit waits in: a group (its rank is held at its WAIT anyway) has its own.
  auto queue_of = [&](int r, const std::vector<int>& ops, bool grouped) {
    if (grouped) return std::pair{r, -1};
    const int peer = peer_of(r, ops.front());
    const bool send = IsSend(s.program[r][ops.front()].op);
    const int stream = layout == StreamLayout::kRank ? 0
                       : layout == StreamLayout::kPair ? 1 + peer
                                                      : 1 + 2 * peer + (send ? 1 : 0);
    return std::pair{r, stream};
  };
  auto post = [&](int r, std::vector<int> ops, bool grouped) {
    const std::pair<int, int> queue = queue_of(r, ops, grouped);
    units.push_back({r, std::move(ops), queue});
    const int u = static_cast<int>(units.size()) - 1;
    for (int op : units[u].ops) unit_of[{r, op}] = u;
    queues[queue].push_back(u);
    return u;
  };
  // Pair set-up, between hosts, which run ahead of their devices: each host walks its first
  // contacts (the units where it meets a peer for the first time) and waits at each until every
  // peer it meets there has reached its own first contact with it. Where a host waits forever,
  // its rank never gets past that unit.
  std::vector<int> host_stuck_at(n, std::numeric_limits<int>::max());
  if (setup) {
    struct FirstContact {
      int at;  // the lone op, or the WAIT that posts the group
      std::vector<int> peers;
    };
    std::vector<std::vector<FirstContact>> contacts(n);
    for (int r = 0; r < n; ++r) {
      std::set<int> met;
      std::vector<int> group;
      auto meet = [&](int at, const std::vector<int>& ops) {
        FirstContact c{at, {}};
        for (int op : ops) {
          if (met.insert(peer_of(r, op)).second) c.peers.push_back(peer_of(r, op));
        }
        if (!c.peers.empty()) contacts[r].push_back(c);
      };
      const bool grouped = HasWait(s.program[r]);
      for (int i = 0; i < static_cast<int>(s.program[r].size()); ++i) {
        const Action& a = s.program[r][i];
        if (IsComm(a.op)) {
          grouped ? group.push_back(i) : meet(i, {i});
        } else if (a.op == Op::kWait && !group.empty()) {
          meet(i, group);
          group.clear();
        }
      }
    }
    std::vector<size_t> next(n, 0);
    std::vector<std::set<int>> arrived(n);
    for (bool moved = true; moved;) {
      moved = false;
      for (int r = 0; r < n; ++r) {
        while (next[r] < contacts[r].size()) {
          const FirstContact& c = contacts[r][next[r]];
          bool ready = true;
          for (int peer : c.peers) {
            arrived[r].insert(peer);
            ready = ready && arrived[peer].count(r) > 0;
          }
          if (!ready) break;
          ++next[r];
          moved = true;
        }
      }
    }
    for (int r = 0; r < n; ++r) {
      if (next[r] < contacts[r].size()) host_stuck_at[r] = contacts[r][next[r]].at;
    }
  }
  auto runs = [&](int u) {
    if (model == CommModel::kEager) return true;
    const std::deque<int>& q = queues[units[u].queue];
    return !q.empty() && q.front() == u;
  };
  auto posted = [&](std::pair<int, int> op) { return unit_of.count(op) > 0; };
  // The SEND a WAIT_SEND at index i waits for: the last of its stage, microbatch and direction.
  auto waited_send = [&](int r, int i) {
    const Action& w = s.program[r][i];
    for (int j = i - 1; j >= 0; --j) {
      const Action& a = s.program[r][j];
      if (a.op == SentBy(w.op) && a.stage == w.stage && a.microbatch == w.microbatch) return j;
    }
    return -1;
  };

  // One step of rank r's host; false when it cannot move now.
  auto step = [&](int r) {
    const std::vector<Action>& program = s.program[r];
    const bool grouped = HasWait(program);
    const int i = pc[r];
    if (i >= host_stuck_at[r]) return false;  // its host never gets past a set-up
    const Action& a = program[i];
    if (IsCompute(a.op)) {
      const std::vector<Task> tasks = Tasks(a);
      for (const Task& t : tasks) {
        const Inputs need = InputsOf(s, r, t);
        for (const Payload& p : need.remote) {
          const std::vector<int> recvs = ReceivesOf(s, pairs, r, i, p);
          if (recvs.empty()) {
            v.inputs = false;  // nothing written before it brings the input
            continue;
          }
          if (!grouped) {
            // It waits for the RECV written for this input (PyTorch's runtime keeps its recv ops
            // by the stage and microbatch a RECV names), whatever that RECV's partner sends.
            bool named = false;
            for (int j : recvs) {
              if (Names(s, s.program[r][j].TaskAt(0))->payload != p) continue;
              named = true;
              if (!op_done.count({r, j})) return false;
            }
            if (!named) v.inputs = false;  // no RECV of its own: it runs without its input
            continue;
          }
          for (int j : recvs) {
            if (!op_done.count({r, j})) v.inputs = false;  // no WAIT completed the receive
          }
        }
        // An OVERLAP_F_B's two tasks are independent: neither needs the other's result.
        for (const Done& d : need.local) {
          if (!done[r].count(d)) v.inputs = false;
        }
      }
      for (const Task& t : tasks) {
        const char what = t.op == Op::kForward ? 'F' : t.op == Op::kWeightGrad ? 'W' : 'B';
        done[r].insert({what, t.stage, t.microbatch});
        if (t.op == Op::kInputGrad) done[r].insert({'I', t.stage, t.microbatch});
      }
    } else if (IsComm(a.op)) {
      if (IsSend(a.op)) {
        if (!done[r].count(MakerOf(Names(s, a.TaskAt(0))->payload))) v.inputs = false;
      }
      if (grouped) {
        collected[r].push_back(i);
      } else {
        post(r, {i}, false);
      }
    } else if (IsWaitSend(a.op)) {
      const int send = waited_send(r, i);
      if (send >= 0 && !op_done.count({r, send})) return false;
    } else if (a.op == Op::kWait && (held_by[r] >= 0 || !collected[r].empty())) {
      if (held_by[r] < 0) {
        held_by[r] = post(r, collected[r], true);
        collected[r].clear();
      }
      if (!unit_complete(held_by[r])) return false;
      held_by[r] = -1;
    }  // else: a WAIT with nothing to post, a data-parallel action
    ++pc[r];
    return true;
  };

  // Lets every running op complete that can; true if any did.
  auto communicate = [&] {
    bool moved = false;
    for (int u = 0; u < static_cast<int>(units.size()); ++u) {
      if (!runs(u) || unit_complete(u)) continue;
      const int r = units[u].rank;
      for (int op : units[u].ops) {
        if (op_done.count({r, op})) continue;
        const std::pair<int, int> other = pairs.Of(r, op);
        const bool has_partner = other.first >= 0;
        bool completes;
        if (model == CommModel::kEager) {
          completes = IsSend(s.program[r][op].op) || (has_partner && posted(other));
        } else {
          completes = has_partner && posted(other) && runs(unit_of[other]);
        }
        if (!completes) continue;
        op_done.insert({r, op});
        if (model == CommModel::kNccl) op_done.insert(other);  // a rendezvous ends both
        moved = true;
      }
    }
    for (auto& [queue, q] : queues) {
      if (model == CommModel::kEager) {
        std::erase_if(q, unit_complete);
      } else {
        while (!q.empty() && unit_complete(q.front())) q.pop_front();
      }
    }
    return moved;
  };

  bool moved = true;
  while (moved) {
    moved = false;
    for (int r = 0; r < n; ++r) {
      while (pc[r] < static_cast<int>(s.program[r].size()) && step(r)) moved = true;
    }
    moved = communicate() || moved;
  }
  for (int r = 0; r < n; ++r) {
    if (pc[r] < static_cast<int>(s.program[r].size()) || !collected[r].empty()) {
      v.runs_to_end = false;
    }
  }
  for (const auto& [queue, q] : queues) {
    if (!q.empty()) v.runs_to_end = false;
  }
  return v;
}

int PeakActivations(const Schedule& s) {
  int peak = 0;
  for (const std::vector<Action>& program : s.program) {
    int live = 0;
    for (const Action& a : program) {
      for (const Task& t : Tasks(a)) {  // an OVERLAP_F_B's forward comes first
        if (t.op == Op::kForward) ++live;
        if (t.op == Op::kBackward || t.op == Op::kInputGrad) --live;
        peak = std::max(peak, live);
      }
    }
  }
  return peak;
}

// Written here apart from the verifier's table of bounds (KindActivationBound) on purpose: the
// memory check is judged against this one, so a wrong bound there must not be copied here.
int KindBound(const Schedule& s) {
  size_t longest = 0;
  for (const auto& route : s.routes) longest = std::max(longest, route.size());
  if (s.kind == "dualpipe" || s.kind == "dualpipev") return static_cast<int>(longest) + 1;
  if (s.kind == "1f1b" || s.kind == "zb1p") return s.ranks;
  if (s.kind == "gpipe") return s.microbatches;
  if (s.kind == "interleaved-1f1b" && s.ranks > 0 && s.stages % s.ranks == 0) {
    const int v = s.stages / s.ranks;
    return std::min(v * s.microbatches, v == 1 ? s.ranks : (v + 1) * s.ranks - 1);
  }
  return -1;
}

Verdict Judge(const Schedule& s, CommModel model, StreamLayout layout) {
  Verdict v;
  v.structure = StructureHolds(s);
  if (!v.structure) return v;
  v.dependencies = DependenciesHold(s);
  v.matching = MessagesMatch(s);
  const Verdict run = Run(s, model, layout);
  v.inputs = run.inputs;
  v.runs_to_end = run.runs_to_end;
  const int bound = KindBound(s);
  v.memory = bound < 0 || PeakActivations(s) <= bound;
  return v;
}

}  // namespace pipeproof::truth
