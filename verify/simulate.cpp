// The event simulation, used for the deadlock verdict and for timing.
//
// A schedule becomes a graph of events: a compute's run; and for every communication unit (a
// WAIT group on a rank with WAITs, else a lone SEND/RECV) its start and its completion. An edge
// says "this event cannot happen before that one": program order of computes, a unit after the
// computes written before it, the in-order communication streams (nccl: one per rank, per rank
// pair or per directed edge, --streams), a WAIT or a WAIT_SEND blocking its rank, a compute
// waiting for the receive of its input, and the messages themselves (nccl: an op completes only
// once its partner's unit has started too; eager: a receive once its send has been posted).
// Under the pair layout the host's arrival at the first unit between two ranks is an event of
// its own, and so is the pair's communicator set-up, which holds both hosts until each has
// reached its first op with the other; hosts run ahead of their devices, so only set-ups hold a
// host back from a first contact, and crossing first contacts deadlock before any data moves.
// Every event happens as soon as all it waits for has happened, so the times come out in one pass
// over the graph in dependency order, and the events that never happen are exactly those stuck on
// a cycle of waits: a deadlock. Its minimal cycle is what the report shows.

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <deque>
#include <limits>
#include <span>
#include <unordered_map>

#include "schedule/threads.h"
#include "verify/internal.h"

namespace pipeproof::verify_internal {
namespace {

constexpr double kNever = std::numeric_limits<double>::infinity();

// Why an event waits for another; the text of a deadlock cycle comes from here.
enum class Reason : uint8_t {
  kComputeOrder,  // computes run in program order
  kAfterCompute,  // a unit starts after the computes written before it have finished
  kStreamOrder,   // nccl: a communication stream runs its units in program order
  kHostAtWait,    // a WAIT blocks its rank until its group has completed
  kSendWait,      // a WAIT_SEND blocks its rank until its SEND has completed
  kInputRecv,     // a compute waits for the receive that brings its input
  kRendezvous,    // nccl: an op completes only while its partner's unit runs
  kSendPosted,    // eager: a receive completes once its send has been posted
  kUnitRuns,      // a unit completes after it starts
  kNoPartner,     // the op has no partner: it never completes
  kNeverPosted,   // ops after a rank's last WAIT: nothing posts them
  kSetupGate,     // pair: the rank waits at its first op with a peer for the pair's set-up
  kSetupReached,  // pair: a set-up completes once both ranks have reached their first op
  kNoSetupPeer,   // pair: the peer has no op with this rank, so the set-up never completes
};

enum class NodeKind : uint8_t { kCompute, kUnitPost, kUnitStart, kUnitEnd, kSetup };

// 8 bytes: an event per compute and two or more per SEND/RECV, so its size is felt in memory.
struct Node {
  NodeKind kind;
  Op op;  // a compute's op, which sets its duration; kWait (no duration) for the other events
  int16_t rank;    // every reader keeps ranks at or below kMaxRanks
  int32_t action;  // compute: its position; unit nodes: the unit's id; set-up: its id
};
static_assert(kMaxRanks <= std::numeric_limits<int16_t>::max());
static_assert(sizeof(Node) == 8);

struct Edge {
  int32_t from;
  int32_t to;
  // The op (on `to`'s rank) or the blocking WAIT/WAIT_SEND concerned, or -1. 24 bits hold any
  // position (a schedule has at most kMaxActions), and the edge takes 12 bytes, not 16.
  int32_t op : 24;
  Reason reason : 8;
};
static_assert(kMaxActions < (1 << 23));

// A WAIT group (posted at its WAIT) or a lone SEND/RECV.
// Its ops run to where the next unit's begin (ExecutionGraph::OpsOf), and its completion is the
// event right after its start (NewUnit adds the two together): neither is stored, which keeps
// a unit (one per SEND/RECV) at 24 bytes.
struct Unit {
  int32_t rank;
  int32_t action;     // the WAIT, the lone op, or (never posted) the first op
  int32_t ops_begin;  // into ExecutionGraph::unit_ops_
  int32_t start;      // node id; its completion is end()
  int32_t post;   // the posting event where it is one of its own (a pair's first contact), or -1
  bool posted;
  bool grouped;
  int32_t end() const { return start + 1; }
};

// The set-up of one rank pair's communicator (pair layout): each side's first unit with the
// other, -1 until that side has one.
struct Setup {
  int32_t node;
  int32_t low, high;  // the ranks
  int32_t unit_of_low = -1, unit_of_high = -1;
};

// What a rank's next action waits for, besides program order: the end of a WAIT's group or of a
// WAIT_SEND's send, or a pair set-up, until the next compute takes the wait over.
struct Gate {
  int32_t node;
  Reason reason;
  int32_t action;  // the WAIT, WAIT_SEND or first-contact op that set it
};

// Values grouped by a key in [0, keys), each group in the values' order, side by side: group g
// is values[begin[g] .. begin[g + 1]).
template <typename T>
struct Grouped {
  std::vector<int32_t> begin;
  std::vector<T> values;
  std::span<const T> Of(int g) const { return {values.data() + begin[g], values.data() + begin[g + 1]}; }
};
// key(k) for k in [0, count): the group of the k-th value, or -1 to leave it out; value(k): it.
// A counting sort, counted one place to the right, so that filling moves each group's start to
// where the next one begins and no cursor array is needed.
template <typename T, typename Key, typename Value>
Grouped<T> GroupBy(int keys, size_t count, const Key& key, const Value& value) {
  Grouped<T> g;
  g.begin.assign(keys + 2, 0);
  for (size_t k = 0; k < count; ++k) {
    if (const int at = key(k); at >= 0) ++g.begin[at + 2];
  }
  for (int v = 1; v <= keys; ++v) g.begin[v + 1] += g.begin[v];
  g.values.resize(g.begin.back());
  for (size_t k = 0; k < count; ++k) {
    if (const int at = key(k); at >= 0) g.values[g.begin[at + 1]++] = value(k);
  }
  g.begin.pop_back();
  return g;
}

class ExecutionGraph {
 public:
  ExecutionGraph(const Schedule& s, const RouteIndex& routes, const Messages& messages,
                 const ReceiveIndex& receives, CommModel model, StreamLayout streams,
                 const Costs& costs)
      : s_(s),
        routes_(routes),
        messages_(messages),
        receives_(receives),
        model_(model),
        streams_(streams),
        costs_(costs),
        lazy_setup_(model == CommModel::kNccl && streams == StreamLayout::kPair) {
    for (size_t op = 0; op < duration_of_op_.size(); ++op) {
      duration_of_op_[op] = CostOf(static_cast<Op>(op), costs);
    }
  }

  void Build() {
    Reserve();
    waited_send_ = WaitedSends(s_);
    of_action_.resize(s_.ranks);
    grouped_.resize(s_.ranks);
    for (int r = 0; r < s_.ranks; ++r) grouped_[r] = UsesWaitGroups(s_.program[r]);
    for (int r = 0; r < s_.ranks; ++r) FormUnits(r);
    ConstrainRanks();
    for (Setup& setup : setups_) {
      if (setup.unit_of_low < 0 || setup.unit_of_high < 0) {
        AddEdge(setup.node, setup.node, Reason::kNoSetupPeer);
      }
    }
    for (int u = 0; u < static_cast<int>(units_.size()); ++u) AddMessageEdges(u);
  }

  // Every event as soon as all it waits for has happened (Kahn's order). `record_order` keeps
  // the order they happened in, for Order().
  void Run(bool record_order) {
    const int n = static_cast<int>(nodes_.size());
    const Grouped<uint32_t> successors = Successors();
    std::vector<int32_t> waiting(n, 0);  // per event: how many edges lead into it
    for (const Edge& e : edges_) ++waiting[e.to];
    time_.assign(n, 0.0);
    happened_.clear();
    if (record_order) happened_.reserve(n);
    std::vector<int32_t> ready;
    for (int v = 0; v < n; ++v) {
      if (waiting[v] == 0) ready.push_back(v);
    }
    while (!ready.empty()) {
      const int v = ready.back();
      ready.pop_back();
      if (record_order) happened_.push_back(v);
      const double finish = time_[v] + Duration(v);
      for (const uint32_t successor : successors.Of(v)) {
        const int32_t to = static_cast<int32_t>(successor & ~kAddsLatency);
        const double delay = (successor & kAddsLatency) ? costs_.latency : 0;
        time_[to] = std::max(time_[to], finish + delay);
        if (--waiting[to] == 0) ready.push_back(to);
      }
    }
    // Every event whose waits all happened went onto `ready` and happened: the done ones are
    // exactly those left waiting for nothing (found here in one pass, not marked in the loop).
    done_.assign(n, false);
    for (int v = 0; v < n; ++v) done_[v] = waiting[v] == 0;
    complete_ = std::all_of(done_.begin(), done_.end(), [](bool d) { return d; });
    // Only a deadlock's explanation reads the edges: a complete execution gives their memory
    // back to the timeline and the checks after it, which then need no fresh pages.
    if (complete_) edges_ = {};
  }

  bool complete() const { return complete_; }
  int64_t Events() const { return static_cast<int64_t>(nodes_.size()); }

  // Every event's place in the simulated timing: by time, ties in the order the simulation let
  // them happen, which follows every edge. Only for a complete execution.
  EventOrder Order() const {
    const int n = static_cast<int>(nodes_.size());
    std::vector<int32_t> by = happened_;
    std::stable_sort(by.begin(), by.end(), [&](int32_t a, int32_t b) { return time_[a] < time_[b]; });
    std::vector<int32_t> position(n);
    for (int k = 0; k < n; ++k) position[by[k]] = k;
    EventOrder o;
    o.at.resize(s_.ranks);
    o.end.resize(s_.ranks);
    for (int r = 0; r < s_.ranks; ++r) {
      o.at[r].assign(s_.program[r].size(), -1);
      o.end[r].assign(s_.program[r].size(), -1);
      for (size_t i = 0; i < s_.program[r].size(); ++i) {
        if (IsCompute(s_.program[r][i].op)) o.at[r][i] = position[ComputeNode(r, i)];
      }
    }
    for (const Unit& unit : units_) {
      o.at[unit.rank][unit.action] = position[unit.start];
      o.end[unit.rank][unit.action] = position[unit.end()];
      if (unit.post >= 0) o.reached[{unit.rank, unit.action}] = position[unit.post];
    }
    for (const Setup& setup : setups_) o.setup[{setup.low, setup.high}] = position[setup.node];
    return o;
  }

  Timeline MakeTimeline() const {
    Timeline t;
    t.ranks.resize(s_.ranks);
    t.busy.assign(s_.ranks, 0.0);
    t.complete = complete_;
    double makespan = 0;
    auto at = [&](int node) { return done_[node] ? time_[node] : kNever; };
    for (int r = 0; r < s_.ranks; ++r) {
      const auto& program = s_.program[r];
      auto& timed = t.ranks[r];
      timed.resize(program.size());
      double host = 0;  // when the rank reaches its next action
      for (int i = 0; i < static_cast<int>(program.size()); ++i) {
        TimedAction& ta = timed[i];
        ta.rank = r;
        ta.index = i;
        ta.start = ta.end = kNever;
        const Action& a = program[i];
        if (IsCompute(a.op)) {
          const int v = ComputeNode(r, i);
          t.busy[r] += Duration(v);
          if (done_[v]) {
            ta.start = time_[v];
            ta.end = time_[v] + Duration(v);
          }
          host = ta.end;
        } else if (IsComm(a.op)) {
          TimeOp(r, i, ta);
          // A first contact under the pair layout holds the rank until the set-up is done.
          if (const int u = UnitOf(r, i); u >= 0 && units_[u].post >= 0 && !units_[u].grouped) {
            host = std::max(host, at(units_[u].start));
          }
        } else if (const int u = WaitUnit(r, i); u >= 0) {  // a WAIT with a group
          ta.start = at(units_[u].start);
          ta.end = at(units_[u].end());
          host = ta.end;
        } else if (const int send = WaitedSend(r, i); send >= 0) {
          ta.start = host;
          ta.end = std::max(host, at(units_[UnitOf(r, send)].end()));
          host = ta.end;
        } else {  // a WAIT with nothing to wait for, a data-parallel action
          ta.start = ta.end = host;
        }
        if (std::isfinite(ta.end)) makespan = std::max(makespan, ta.end);
      }
    }
    t.makespan = makespan;
    for (int r = 0; r < s_.ranks; ++r) t.bubble.push_back(makespan - t.busy[r]);
    return t;
  }

  // The shortest cycle of waits through the stuck point (empty when complete), and whether it
  // passes a pair's set-up.
  std::vector<CycleStep> MinimalCycle(bool* through_setup) const;
  std::vector<Endpoint> StuckActions(const std::vector<CycleStep>& cycle) const {
    std::vector<Endpoint> out;
    for (const CycleStep& step : cycle) out.push_back({step.rank, step.index});
    return out;
  }

 private:
  // Room for the whole graph up front: grown by doubling, the copies and the freshly zeroed pages
  // cost more than the build. The bounds are generous (an event per compute, two per SEND/RECV, a
  // few edges each) since pages never written are never mapped; only the pair layout's set-ups
  // and posting events may grow past them.
  void Reserve() {
    size_t computes = 0, comms = 0, others = 0;
    for (const auto& program : s_.program) {
      for (const Action& a : program) {
        if (IsCompute(a.op)) {
          ++computes;
        } else if (IsComm(a.op)) {
          ++comms;
        } else {
          ++others;
        }
      }
    }
    nodes_.reserve(computes + 2 * comms + s_.ranks);
    edges_.reserve(4 * computes + 5 * comms + 2 * others + s_.ranks);
    units_.reserve(comms);
    unit_ops_.reserve(comms);
  }

  int AddNode(NodeKind kind, int rank, int action, Op op = Op::kWait) {
    nodes_.push_back({kind, op, static_cast<int16_t>(rank), action});
    return static_cast<int>(nodes_.size() - 1);
  }
  double Duration(int node) const { return duration_of_op_[static_cast<size_t>(nodes_[node].op)]; }
  void AddEdge(int from, int to, Reason reason, int op = -1) {
    edges_.push_back({from, to, op, reason});
  }

  int ComputeNode(int r, int i) const { return of_action_[r][i]; }  // of a compute
  int UnitOf(int r, int i) const { return of_action_[r][i]; }       // of a SEND/RECV
  int WaitUnit(int r, int i) const { return of_action_[r][i]; }     // of a WAIT, WAIT_SEND, ...

  int WaitedSend(int r, int i) const {
    return waited_send_[r].empty() ? -1 : waited_send_[r][i];
  }

  double Delay(const Edge& e) const {
    switch (e.reason) {
      case Reason::kRendezvous:
      case Reason::kSendPosted:
        return costs_.latency;
      case Reason::kUnitRuns:
        return UnitWaitsForLatency(nodes_[e.to].action) ? costs_.latency : 0;
      default:
        return 0;
    }
  }

  // nccl: every op completes `latency` after both ends run. eager: a send completes when
  // posted, so only a unit with a receive has the latency.
  bool UnitWaitsForLatency(int u) const {
    if (model_ == CommModel::kNccl) return true;
    for (int32_t op : OpsOf(u)) {
      if (IsRecv(s_.program[units_[u].rank][op].op)) return true;
    }
    return false;
  }

  // Unit u's SEND/RECVs (positions on its rank): up to where the next unit's begin.
  std::span<const int32_t> OpsOf(int u) const {
    const size_t begin = units_[u].ops_begin;
    const size_t end = u + 1 < static_cast<int>(units_.size()) ? units_[u + 1].ops_begin
                                                               : unit_ops_.size();
    return {unit_ops_.data() + begin, end - begin};
  }

  // First pass over a rank: its units. A rank with WAITs groups its SEND/RECVs at each WAIT (what
  // follows its last WAIT is never posted); a rank without posts each where it stands.
  void FormUnits(int r) {
    const auto& program = s_.program[r];
    const bool grouped = grouped_[r];
    of_action_[r].assign(program.size(), -1);
    std::vector<int32_t> pending;  // ops of the group being collected
    for (int i = 0; i < static_cast<int>(program.size()); ++i) {
      const Action& a = program[i];
      if (IsCompute(a.op)) {
        of_action_[r][i] = AddNode(NodeKind::kCompute, r, i, a.op);
      } else if (IsComm(a.op)) {
        if (grouped) {
          pending.push_back(i);
        } else {
          const int32_t alone[] = {i};
          NewUnit(r, i, alone, /*posted=*/true, /*grouped=*/false);
        }
      } else if (a.op == Op::kWait && !pending.empty()) {
        of_action_[r][i] = NewUnit(r, i, pending, /*posted=*/true, /*grouped=*/true);
        pending.clear();
      }
    }
    if (!pending.empty()) {
      const int u = NewUnit(r, pending.front(), pending, /*posted=*/false, /*grouped=*/true);
      AddEdge(units_[u].start, units_[u].start, Reason::kNeverPosted);
      AddEdge(units_[u].start, units_[u].end(), Reason::kUnitRuns);
    }
  }

  // What the second pass keeps while it walks a rank, and the list its edges go to: each of two
  // walks at once has its own.
  struct RankWalk {
    RankWalk(std::vector<Edge>& out, int ranks) : edges(out), stream_end(2 * ranks, -1), contacted(ranks, 0) {}
    void Add(int from, int to, Reason reason, int op = -1) { edges.push_back({from, to, op, reason}); }
    std::vector<Edge>& edges;
    // Streams are numbered below 2 x ranks (StreamOf), peers below ranks; only the entries the
    // last rank set are reset (a rank meets few of thousands of ranks).
    std::vector<int32_t> stream_end;  // per stream, its last unit's end (-1: none yet)
    std::vector<char> contacted;      // per peer, met so far
    std::vector<int> streams_used, peers_met;  // the entries set on this rank
    std::vector<Gate> host_setups;  // the set-ups the rank's host waits at last
    std::vector<int32_t> inputs;    // a compute's input receives
  };

  // Second pass, over every rank. A rank's walk reads what the first pass made and adds edges,
  // and under lazy set-ups (pair layout) events and set-ups too; elsewhere the later ranks of a
  // large schedule are walked on the second core into a list of their own, appended after the
  // first ranks' edges: the same edges in the same order as one walk.
  void ConstrainRanks() {
    const int64_t actions = s_.ActionCount();
    int split = 0;
    int64_t before_split = 0;  // the actions of ranks [0, split)
    for (; split < s_.ranks && (lazy_setup_ || before_split < actions / 2); ++split) {
      before_split += static_cast<int64_t>(s_.program[split].size());
    }
    std::vector<Edge> later;
    later.reserve(4 * (actions - before_split));  // from this thread's memory, as the rest
    // Each walk appends to a list its own thread holds (moved in and out): a list's size, written
    // at every edge beside what the other core reads (this object, the caller's stack), would
    // have the cores take the cache line from each other each time.
    auto walk_ranks = [this](int first, int last, std::vector<Edge>& out) {
      RankWalk walk(out, s_.ranks);
      for (int r = first; r < last; ++r) ConstrainRank(r, walk);
    };
    Beside<void> beside(
        [&] {
          std::vector<Edge> mine = std::move(later);
          walk_ranks(split, s_.ranks, mine);
          later = std::move(mine);
        },
        actions >= kActionsWorthAThread && split < s_.ranks);
    std::vector<Edge> mine = std::move(edges_);
    walk_ranks(0, split, mine);
    beside.get();
    mine.insert(mine.end(), later.begin(), later.end());
    edges_ = std::move(mine);
  }

  // The order within a rank. `gates` are what the rank's next action waits for beyond the last
  // compute (a WAIT_SEND's send, a pair's set-up), until a compute takes them over; the last
  // WAIT's group holds every later unit directly, which keeps deadlock cycles short.
  void ConstrainRank(int r, RankWalk& walk) {
    const auto& program = s_.program[r];
    const bool grouped = grouped_[r];
    int last_compute = -1;
    std::vector<Gate> gates;
    for (int stream : walk.streams_used) walk.stream_end[stream] = -1;
    for (int peer : walk.peers_met) walk.contacted[peer] = 0;
    walk.streams_used.clear();
    walk.peers_met.clear();
    walk.host_setups.clear();
    for (int i = 0; i < static_cast<int>(program.size()); ++i) {
      const Action& a = program[i];
      if (IsCompute(a.op)) {
        const int v = ComputeNode(r, i);
        if (last_compute >= 0) walk.Add(last_compute, v, Reason::kComputeOrder);
        for (const Gate& g : gates) walk.Add(g.node, v, g.reason, g.action);
        std::erase_if(gates, [](const Gate& g) { return g.reason != Reason::kHostAtWait; });
        if (!grouped) {
          InputReceives(s_, routes_, receives_, r, i, walk.inputs);
          for (int32_t recv : walk.inputs) walk.Add(units_[UnitOf(r, recv)].end(), v, Reason::kInputRecv);
        }
        last_compute = v;
      } else if (IsComm(a.op)) {
        if (!grouped) Post(UnitOf(r, i), last_compute, gates, walk);
      } else if (const int u = WaitUnit(r, i); u >= 0) {
        Post(u, last_compute, gates, walk);
        gates.clear();  // all held this group, which holds what follows
        gates.push_back({units_[u].end(), Reason::kHostAtWait, i});
      } else if (const int send = WaitedSend(r, i); send >= 0) {
        gates.push_back({units_[UnitOf(r, send)].end(), Reason::kSendWait, i});
      }
    }
  }

  // Unit u is posted: after the computes before it and what holds the rank, in its streams'
  // order, and (pair layout) after the set-up of each pair it is the first contact of. A set-up
  // is between hosts, which run ahead of their devices (a compute, a WAIT and a WAIT_SEND are
  // stream waits in PyTorch): the host reaches a first contact as soon as the set-ups of its
  // earlier first contacts are done, whatever data the computes wait for.
  void Post(int u, int last_compute, std::vector<Gate>& gates, RankWalk& walk) {
    const std::vector<int> new_peers = lazy_setup_ ? FirstContacts(u, walk) : std::vector<int>{};
    Unit& unit = units_[u];
    if (last_compute >= 0) walk.Add(last_compute, unit.start, Reason::kAfterCompute);
    for (const Gate& g : gates) walk.Add(g.node, unit.start, g.reason, g.action);
    if (!new_peers.empty()) {
      unit.post = AddNode(NodeKind::kUnitPost, unit.rank, u);
      for (const Gate& g : walk.host_setups) walk.Add(g.node, unit.post, g.reason, g.action);
      walk.host_setups.clear();
      for (int peer : new_peers) {
        const int setup = JoinSetup(u, peer);
        walk.Add(unit.post, setups_[setup].node, Reason::kSetupReached, unit.action);
        walk.Add(setups_[setup].node, unit.start, Reason::kSetupGate, unit.action);
        gates.push_back({setups_[setup].node, Reason::kSetupGate, unit.action});
        walk.host_setups.push_back(gates.back());
      }
    }
    if (model_ == CommModel::kNccl && !unit.grouped) {
      const int op = unit_ops_[unit.ops_begin];
      const int stream = StreamOf(streams_, messages_.peer[unit.rank][op],
                                  IsSend(s_.program[unit.rank][op].op));
      if (walk.stream_end[stream] >= 0) {
        walk.Add(walk.stream_end[stream], unit.start, Reason::kStreamOrder);
      } else {
        walk.streams_used.push_back(stream);
      }
      walk.stream_end[stream] = unit.end();
    }
    walk.Add(unit.start, unit.end(), Reason::kUnitRuns);
  }

  // The peers unit u's rank meets for the first time in it.
  std::vector<int> FirstContacts(int u, RankWalk& walk) const {
    std::vector<int> peers;
    const Unit& unit = units_[u];
    for (int32_t op : OpsOf(u)) {
      const int peer = messages_.peer[unit.rank][op];
      if (peer >= 0 && !walk.contacted[peer]) {
        walk.contacted[peer] = 1;
        walk.peers_met.push_back(peer);
        peers.push_back(peer);
      }
    }
    return peers;
  }

  // The set-up of unit u's rank and `peer`, which unit u takes part in.
  int JoinSetup(int u, int peer) {
    const int r = units_[u].rank;
    const int low = std::min(r, peer), high = std::max(r, peer);
    const int64_t key = int64_t{low} * s_.ranks + high;
    auto [it, inserted] = setup_of_pair_.try_emplace(key, static_cast<int>(setups_.size()));
    if (inserted) {
      const int id = static_cast<int>(setups_.size());
      setups_.push_back({AddNode(NodeKind::kSetup, low, id), low, high});
    }
    Setup& setup = setups_[it->second];
    (r == low ? setup.unit_of_low : setup.unit_of_high) = u;
    return it->second;
  }

  int NewUnit(int r, int action, std::span<const int32_t> ops, bool posted, bool grouped) {
    const int u = static_cast<int>(units_.size());
    Unit unit{r, action, static_cast<int32_t>(unit_ops_.size()), 0, -1, posted, grouped};
    for (int32_t op : ops) {
      unit_ops_.push_back(op);
      of_action_[r][op] = u;
    }
    unit.start = AddNode(NodeKind::kUnitStart, r, u);
    AddNode(NodeKind::kUnitEnd, r, u);  // unit.end(), right after the start
    units_.push_back(unit);
    return u;
  }

  // The messages: each op of unit u waits for its partner's unit (nccl: to run; eager: a receive
  // for its send to be posted). An op without a partner never completes.
  void AddMessageEdges(int u) {
    const Unit& unit = units_[u];
    for (const int op : OpsOf(u)) {
      const bool recv = IsRecv(s_.program[unit.rank][op].op);
      const Endpoint other = messages_.partner[unit.rank][op];
      if (!other.valid()) {
        if (model_ == CommModel::kNccl || recv) AddEdge(unit.end(), unit.end(), Reason::kNoPartner, op);
        continue;
      }
      const Unit& theirs = units_[UnitOf(other.rank, other.index)];
      if (model_ == CommModel::kNccl) {
        AddEdge(theirs.start, unit.end(), Reason::kRendezvous, op);
      } else if (recv) {
        AddEdge(theirs.start, unit.end(), Reason::kSendPosted, op);
      }
    }
  }

  // Each event's successors, as Run() reads them: the successor with its delay folded into one
  // word, in place of an index into edges_ (one memory access less per edge, the hot loop's cost).
  Grouped<uint32_t> Successors() const {
    return GroupBy<uint32_t>(
        static_cast<int>(nodes_.size()), edges_.size(), [&](size_t k) { return edges_[k].from; },
        [&](size_t k) {
          // Without latency no edge delays (Delay() is the latency or 0): skip its look-ups.
          const bool delayed = costs_.latency != 0 && Delay(edges_[k]) != 0;
          return static_cast<uint32_t>(edges_[k].to) | (delayed ? kAddsLatency : 0);
        });
  }

  void TimeOp(int r, int i, TimedAction& ta) const {
    const int u = UnitOf(r, i);
    if (u < 0) return;
    const Unit& unit = units_[u];
    if (!done_[unit.start]) return;
    ta.start = time_[unit.start];
    const Endpoint other = messages_.partner[r][i];
    const bool recv = IsRecv(s_.program[r][i].op);
    if (model_ == CommModel::kEager && !recv) {
      ta.end = ta.start;
      return;
    }
    if (!other.valid()) return;
    const Unit& theirs = units_[UnitOf(other.rank, other.index)];
    if (!done_[theirs.start]) return;
    ta.end = std::max(ta.start, time_[theirs.start]) + costs_.latency;
  }

  // ---- the deadlock cycle
  struct CycleLink {
    int node;  // this node waits for the next one in the cycle ...
    int edge;  // ... by this edge (edge.to == node)
  };
  // The edges into each stuck event, in edge order, side by side (a list per event cost an
  // allocation each: seconds on millions of events).
  using WaitsInto = Grouped<int32_t>;
  WaitsInto StuckWaits() const {
    return GroupBy<int32_t>(
        static_cast<int>(nodes_.size()), edges_.size(),
        [&](size_t k) { return done_[edges_[k].to] ? -1 : edges_[k].to; },
        [](size_t k) { return static_cast<int32_t>(k); });
  }
  // A breadth-first search's marks, kept from one search to the next: only the events a search
  // reached are reset, not arrays as long as the graph.
  struct SearchMarks {
    std::vector<int32_t> via, depth;  // the edge by which an event was reached, and how far; -1: not
    std::vector<int32_t> reached;
    void Reset() {
      for (int32_t v : reached) via[v] = depth[v] = -1;
      reached.clear();
    }
  };
  std::vector<CycleLink> ShortestCycleThrough(int start, const WaitsInto& in, size_t shorter_than,
                                              SearchMarks& marks) const;
  std::vector<CycleStep> Render(std::vector<CycleLink> cycle, bool* through_setup) const;
  std::vector<CycleStep> RenderSetupWithoutPeer(int setup_node) const;
  int64_t Identity(int node) const {
    const Node& n = nodes_[node];
    switch (n.kind) {
      case NodeKind::kCompute: return int64_t{n.rank} << 32 | n.action;
      case NodeKind::kSetup: return -(int64_t{1} << 40) - n.action;
      default: return -1 - n.action;  // every event of a unit is one step
    }
  }
  std::string Describe(const Edge& e, const CycleStep& next) const;
  std::string DescribeSetup(const Edge& gate, const CycleStep& next) const;
  std::string StreamName(int rank, int op) const;

  const Schedule& s_;
  const RouteIndex& routes_;
  const Messages& messages_;
  const ReceiveIndex& receives_;
  CommModel model_;
  StreamLayout streams_;
  Costs costs_;
  bool lazy_setup_;  // nccl under the pair layout: first contacts set up a communicator
  std::array<double, 256> duration_of_op_;  // by op (Op is a byte): a compute's cost, else 0
  std::vector<Node> nodes_;
  std::vector<Edge> edges_;
  std::vector<Unit> units_;
  std::vector<int32_t> unit_ops_;
  std::vector<Setup> setups_;
  std::unordered_map<int64_t, int32_t> setup_of_pair_;  // low * ranks + high -> setup
  // [rank][action]: a compute's event, a SEND/RECV's unit, a WAIT's unit (its group), else -1:
  // one array, since each action is one of these at most.
  std::vector<std::vector<int32_t>> of_action_;
  std::vector<std::vector<int32_t>> waited_send_;
  std::vector<char> grouped_;  // [rank]: the rank has WAITs, so its SEND/RECVs form groups
  static constexpr uint32_t kAddsLatency = uint32_t{1} << 31;  // node ids stay below it
  std::vector<double> time_;
  std::vector<bool> done_;
  std::vector<int32_t> happened_;  // the nodes in the order Run() let them happen
  bool complete_ = false;
};

// Breadth-first search backwards along "waits for" edges, through stuck events only, for the
// shortest way from `start` back to itself, if it has fewer than `shorter_than` events.
std::vector<ExecutionGraph::CycleLink> ExecutionGraph::ShortestCycleThrough(
    int start, const WaitsInto& in, size_t shorter_than, SearchMarks& marks) const {
  marks.Reset();
  std::vector<int32_t>& via = marks.via;  // via[w]: the edge by which w was reached
  std::vector<int32_t>& depth = marks.depth;
  std::deque<int> queue{start};
  depth[start] = 0;
  marks.reached.push_back(start);
  while (!queue.empty()) {
    const int v = queue.front();
    queue.pop_front();
    if (static_cast<size_t>(depth[v]) + 1 >= shorter_than) break;  // no shorter cycle left
    for (int32_t k : in.Of(v)) {
      const int w = edges_[k].from;  // v waits for w
      if (done_[w]) continue;
      if (w == start) {
        // start waits for ... waits for v, which waits for start.
        std::vector<int> chain{v};
        for (int x = v; x != start; x = edges_[via[x]].to) chain.push_back(edges_[via[x]].to);
        std::reverse(chain.begin(), chain.end());
        std::vector<CycleLink> cycle;
        for (size_t j = 0; j < chain.size(); ++j) {
          cycle.push_back({chain[j], j + 1 < chain.size() ? via[chain[j + 1]] : k});
        }
        return cycle;
      }
      if (depth[w] >= 0) continue;
      depth[w] = depth[v] + 1;
      via[w] = k;
      marks.reached.push_back(w);
      queue.push_back(w);
    }
  }
  return {};
}

std::vector<CycleStep> ExecutionGraph::MinimalCycle(bool* through_setup) const {
  if (complete_) return {};
  const WaitsInto in = StuckWaits();
  SearchMarks marks{std::vector<int32_t>(nodes_.size(), -1), std::vector<int32_t>(nodes_.size(), -1), {}};
  // Candidates: each rank's first stuck compute and first stuck unit events, then (should no
  // cycle pass through those) the events on a cycle found by walking back from one of them.
  std::vector<int> candidates;
  std::vector<bool> rank_has_compute(s_.ranks, false), rank_has_unit(s_.ranks, false);
  int any_stuck = -1;
  for (int v = 0; v < static_cast<int>(nodes_.size()); ++v) {
    if (done_[v]) continue;
    if (any_stuck < 0) any_stuck = v;
    const int r = nodes_[v].rank;
    auto& seen = nodes_[v].kind == NodeKind::kCompute ? rank_has_compute : rank_has_unit;
    if (!seen[r]) {
      seen[r] = true;
      candidates.push_back(v);
    }
  }
  std::vector<CycleLink> best;
  auto consider = [&](int v) {
    std::vector<CycleLink> c =
        ShortestCycleThrough(v, in, best.empty() ? nodes_.size() + 1 : best.size(), marks);
    if (!c.empty() && (best.empty() || c.size() < best.size())) best = std::move(c);
  };
  for (int v : candidates) consider(v);
  if (best.empty() && any_stuck >= 0) {
    std::vector<int> order(nodes_.size(), -1);
    int v = any_stuck;
    for (int step = 0; order[v] < 0; ++step) {
      order[v] = step;
      for (int32_t k : in.Of(v)) {
        if (!done_[edges_[k].from]) {
          v = edges_[k].from;
          break;
        }
      }
    }
    consider(v);
  }
  return Render(std::move(best), through_setup);
}

// Turns a cycle of events into a cycle of actions: the events of one unit are one step, and a
// pair's set-up is told as part of the step that waits for it; each step says what it waits for.
std::vector<CycleStep> ExecutionGraph::Render(std::vector<CycleLink> cycle,
                                              bool* through_setup) const {
  if (cycle.empty()) return {};
  const size_t n = cycle.size();
  std::vector<int> node(n), wait_edge(n);
  for (size_t j = 0; j < n; ++j) {
    node[j] = cycle[j].node;
    wait_edge[j] = cycle[j].edge;
  }
  auto is_setup = [&](int v) { return nodes_[v].kind == NodeKind::kSetup; };
  *through_setup = std::any_of(node.begin(), node.end(), is_setup);
  if (std::all_of(node.begin(), node.end(), is_setup)) return RenderSetupWithoutPeer(node[0]);
  // Rotate so the cycle starts where one action ends and the next begins.
  size_t first = 0;
  for (size_t j = 0; j < n; ++j) {
    if (!is_setup(node[j]) && Identity(node[j]) != Identity(node[(j + n - 1) % n])) {
      first = j;
      break;
    }
  }
  std::rotate(node.begin(), node.begin() + first, node.end());
  std::rotate(wait_edge.begin(), wait_edge.begin() + first, wait_edge.end());
  // Runs of events of one action (set-ups left out); the last event of a run waits for the next.
  std::vector<int> run_last;
  for (size_t j = 0; j < n; ++j) {
    if (is_setup(node[j])) continue;
    if (j + 1 == n || Identity(node[j + 1]) != Identity(node[j])) {
      run_last.push_back(static_cast<int>(j));
    }
  }
  // A cycle within one action (a WAIT_SEND before the WAIT that posts its SEND: the group waits for
  // itself) is told by the wait that closes it, not by the unit running from start to end.
  if (run_last.size() == 1) {
    for (size_t j = 0; j < n; ++j) {
      if (edges_[wait_edge[j]].reason != Reason::kUnitRuns) {
        std::swap(wait_edge[j], wait_edge[run_last[0]]);
        std::swap(node[j], node[run_last[0]]);
        break;
      }
    }
  }
  std::vector<CycleStep> steps(run_last.size());
  for (size_t k = 0; k < run_last.size(); ++k) {
    const Node& v = nodes_[node[run_last[k]]];
    const Edge& e = edges_[wait_edge[run_last[k]]];
    CycleStep& step = steps[k];
    step.rank = v.rank;
    const bool op_waits = e.reason == Reason::kRendezvous || e.reason == Reason::kSendPosted ||
                          e.reason == Reason::kNoPartner;
    if (v.kind == NodeKind::kCompute) {
      step.index = v.action;
    } else if (op_waits) {
      step.index = e.op;  // the op of a group that waits
    } else {
      step.index = units_[v.action].action;
    }
    step.action = ToString(s_.program[step.rank][step.index]);
  }
  for (size_t k = 0; k < run_last.size(); ++k) {
    const Edge& e = edges_[wait_edge[run_last[k]]];
    const CycleStep& next = steps[(k + 1) % run_last.size()];
    steps[k].waits_for = e.reason == Reason::kSetupGate ? DescribeSetup(e, next) : Describe(e, next);
  }
  return steps;
}

// A set-up that never completes because the peer has no op with the rank at all.
std::vector<CycleStep> ExecutionGraph::RenderSetupWithoutPeer(int setup_node) const {
  const Setup& setup = setups_[nodes_[setup_node].action];
  const int u = setup.unit_of_low >= 0 ? setup.unit_of_low : setup.unit_of_high;
  const int rank = units_[u].rank, peer = rank == setup.low ? setup.high : setup.low;
  CycleStep step;
  step.rank = rank;
  step.index = units_[u].action;
  step.action = ToString(s_.program[rank][step.index]);
  step.waits_for = fmt::format(
      "never gets past the set-up of its communicator with rank {}: rank {} has no SEND/RECV "
      "with rank {}, so it never reaches a first op with it (a lazily created pair "
      "communicator blocks both ranks until each reaches its first op with the other)",
      peer, peer, rank);
  return {step};
}

std::string ExecutionGraph::StreamName(int rank, int op) const {
  const int peer = messages_.peer[rank][op];
  switch (streams_) {
    case StreamLayout::kRank: return "the rank's one communication stream";
    case StreamLayout::kPair:
      return fmt::format("rank {}'s stream for its traffic with rank {}", rank, peer);
    case StreamLayout::kEdge:
      return IsSend(s_.program[rank][op].op)
                 ? fmt::format("rank {}'s stream for what it sends to rank {}", rank, peer)
                 : fmt::format("rank {}'s stream for what it receives from rank {}", rank, peer);
  }
  return "the stream";
}

std::string ExecutionGraph::DescribeSetup(const Edge& gate, const CycleStep& next) const {
  const Setup& setup = setups_[nodes_[gate.from].action];
  const int rank = nodes_[gate.to].rank;
  const int peer = rank == setup.low ? setup.high : setup.low;
  return fmt::format(
      "cannot go on before the set-up of rank {}'s communicator with rank {} completes (its "
      "first op with rank {} is [{}] {}), which waits for rank {} to reach [{}] {}, its first op "
      "with rank {}: a lazily created pair communicator is set up at the first op between two "
      "ranks and holds each rank's host until the other has reached its own first op with it",
      rank, peer, peer, gate.op, ToString(s_.program[rank][gate.op]), next.rank, next.index,
      next.action, rank);
}

std::string ExecutionGraph::Describe(const Edge& e, const CycleStep& next) const {
  const std::string them = fmt::format("rank {} [{}] {}", next.rank, next.index, next.action);
  const Node& to = nodes_[e.to];
  switch (e.reason) {
    case Reason::kComputeOrder:
      return fmt::format("waits for {} to finish: a rank runs its computes in program order", them);
    case Reason::kAfterCompute:
      return fmt::format(
          "cannot start before {} finishes: a SEND/RECV starts only after the "
          "computes written before it",
          them);
    case Reason::kStreamOrder: {
      const int op = unit_ops_[units_[to.action].ops_begin];
      return fmt::format("waits for {} to complete: {} runs SEND/RECV in program order", them,
                         StreamName(to.rank, op));
    }
    case Reason::kHostAtWait:
      return fmt::format(
          "waits for {} to complete: a WAIT blocks its rank until its group "
          "completes",
          them);
    case Reason::kSendWait:
      return fmt::format(
          "waits for {} to complete: the {} at [{}] blocks the rank until that SEND has "
          "completed",
          them, ToString(s_.program[to.rank][e.op]), e.op);
    case Reason::kInputRecv:
      return fmt::format("waits for {}, which brings its input", them);
    case Reason::kRendezvous: {
      const Endpoint other = messages_.partner[to.rank][e.op];
      return fmt::format(
          "completes only together with its partner rank {} [{}] {}, which "
          "cannot start: NCCL send/recv is a rendezvous",
          other.rank, other.index, ToString(s_.program[other.rank][other.index]));
    }
    case Reason::kSendPosted: {
      const Endpoint other = messages_.partner[to.rank][e.op];
      return fmt::format("waits for its SEND, rank {} [{}] {}, to be posted", other.rank,
                         other.index, ToString(s_.program[other.rank][other.index]));
    }
    case Reason::kUnitRuns:
      return fmt::format("waits for {}", them);
    case Reason::kNoPartner: {
      const Action& a = s_.program[to.rank][e.op];
      return fmt::format("never completes: it meets no {} on rank {} (see matching)",
                         IsSend(a.op) ? "RECV" : "SEND", messages_.peer[to.rank][e.op]);
    }
    case Reason::kNeverPosted:
      return fmt::format(
          "is never posted: it comes after rank {}'s last WAIT, and only a WAIT "
          "posts the SEND/RECVs before it",
          to.rank);
    case Reason::kSetupGate:  // told by DescribeSetup
    case Reason::kSetupReached:
    case Reason::kNoSetupPeer:
      return fmt::format("waits for the set-up of a pair communicator, then {}", them);
  }
  return "waits";
}

}  // namespace

bool RunsToEnd(const Schedule& schedule, const RouteIndex& routes, const Messages& messages,
               const ReceiveIndex& receives, CommModel model, StreamLayout streams) {
  ExecutionGraph graph(schedule, routes, messages, receives, model, streams, Costs{});
  graph.Build();
  graph.Run(/*record_order=*/false);
  return graph.complete();
}

SimulationResult RunSimulation(const Schedule& schedule, const RouteIndex& routes,
                               const Messages& messages, CommModel model, const Costs& costs,
                               StreamLayout streams, bool record_order) {
  return RunSimulation(schedule, routes, messages, ReceiveIndex(schedule, messages), model, costs,
                       streams, record_order);
}

SimulationResult RunSimulation(const Schedule& schedule, const RouteIndex& routes,
                               const Messages& messages, const ReceiveIndex& receives,
                               CommModel model, const Costs& costs, StreamLayout streams,
                               bool record_order, const std::function<void()>& beside) {
  ExecutionGraph graph(schedule, routes, messages, receives, model, streams, costs);
  graph.Build();
  Beside<void> other([&] { if (beside) beside(); }, beside && graph.Events() >= kActionsWorthAThread);
  graph.Run(record_order);
  SimulationResult result;
  result.timeline = graph.MakeTimeline();
  if (record_order && graph.complete()) result.order = graph.Order();
  if (!graph.complete()) {
    result.cycle = graph.MinimalCycle(&result.setup_deadlock);
    result.stuck_grid = GridAround(schedule, graph.StuckActions(result.cycle));
  }
  other.get();
  return result;
}

}  // namespace pipeproof::verify_internal
