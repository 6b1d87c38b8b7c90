// The deadlock proof with Z3, written apart from the event simulation so the two verdicts check
// each other (docs/design.md, "deadlock"). One real variable per compute (when it runs) and two per
// communication unit (when it starts, when it completes); under the pair layout one more per
// first contact between two ranks (when the rank's host reaches it) and one per rank pair (when
// its communicator is set up). Every rule of the communication model
// is a strict inequality "x < y" (y cannot happen until x has): strict, because with "<=" a
// cycle of zero-length waits would be satisfiable and a real deadlock would pass as sound. All
// constraints are differences of two variables, so this is difference logic: satisfiable means a
// timing of every action exists, a complete execution; unsatisfiable means a cycle of waits, and
// the unsat core (re-solved with tracked constraints) is turned into that cycle.

#include <chrono>

#include "verify/internal.h"

#ifdef PIPEPROOF_HAVE_Z3

#include <fmt/format.h>
#include <z3++.h>

#include <algorithm>
#include <deque>
#include <map>
#include <set>

namespace pipeproof::verify_internal {
namespace {

enum class Rule : uint8_t {
  kComputeOrder,  // computes in program order
  kAfterCompute,  // a unit starts after the computes written before it
  kStreamOrder,   // nccl: the lone units of one stream in program order
  kWaitBlocks,    // a WAIT's group completes before the rank goes on
  kSendWaitBlocks,  // a WAIT_SEND's send completes before the rank goes on
  kInputRecv,     // a compute after the receive that brings its input
  kStartsFirst,   // a unit starts before it completes
  kRendezvous,    // nccl: an op completes after its partner's unit starts
  kSendPosted,    // eager: a receive completes after its send is posted
  kNoPartner,     // an op without a partner: unsatisfiable on its own
  kNeverPosted,   // ops after the last WAIT: unsatisfiable on its own
  kSetupPosted,   // pair: a pair's set-up after each side has posted its first unit with the other
  kSetupBlocks,   // pair: a side's first unit, and what its rank does next, after the set-up
  kSetupNoPeer,   // pair: a side that never posts: unsatisfiable on its own
};

struct Variable {
  int32_t rank;   // -1 for a pair's set-up
  int32_t index;  // the compute, or the unit's WAIT / lone op / first op; a set-up: its id
};

// A unit of one rank: the ops it holds and the action that posts it.
struct RankUnit {
  int anchor;  // the WAIT, the lone op, or (never posted) the first op
  std::vector<int> ops;
  bool posted;
};

// before < after
struct Constraint {
  int32_t before;
  int32_t after;
  int32_t op;  // the op concerned, for message rules
  Rule rule;
};

// Integer times (a timing with real times exists iff one with integer times does, every
// constraint being x - y <= -1) and Z3's Bellman-Ford difference-logic solver rather than its
// general simplex: measured on DualPipe with 32 ranks and 128 microbatches, 2 s instead of 66 s
// (and 460 s with reals under QF_RDL's default set-up).
z3::solver DifferenceLogicSolver(z3::context& ctx) {
  z3::solver solver(ctx);
  z3::params params(ctx);
  params.set("arith.solver", 1u);
  solver.set(params);
  return solver;
}

class Encoding {
 public:
  Encoding(const Schedule& s, const RouteIndex& routes, const Messages& messages, CommModel model,
           StreamLayout streams)
      : s_(s),
        routes_(routes),
        messages_(messages),
        model_(model),
        streams_(streams),
        receives_(s, messages),
        waited_sends_(WaitedSends(s)) {}

  void Build(const ProgressCallback& progress) {
    op_start_.resize(s_.ranks);
    op_end_.resize(s_.ranks);
    for (int r = 0; r < s_.ranks; ++r) {
      if (progress) progress("deadlock: Z3 encoding", r, s_.ranks);
      EncodeRank(r);
    }
    for (const PairSetup& setup : setups_) {
      if (setup.low_anchor < 0 || setup.high_anchor < 0) {
        Require(setup.var, setup.var, Rule::kSetupNoPeer);
      }
    }
    for (int r = 0; r < s_.ranks; ++r) EncodeMessages(r);
  }

  int variables() const { return static_cast<int>(vars_.size()); }
  int constraints() const { return static_cast<int>(constraints_.size()); }

  // true: a timing exists. false: `core` holds the constraints of a cycle. Every constraint is
  // tracked by a Boolean label assumed true, so one solve gives the verdict and, when
  // unsatisfiable, the core (on the 32 x 128 DualPipe this is no slower than an untracked solve).
  bool Solve(std::vector<int>* core) {
    z3::context ctx;
    std::vector<z3::expr> x;
    x.reserve(vars_.size());
    for (size_t v = 0; v < vars_.size(); ++v) {
      x.push_back(ctx.constant(ctx.int_symbol(static_cast<int>(v)), ctx.int_sort()));
    }
    z3::solver solver = DifferenceLogicSolver(ctx);
    z3::expr_vector labels(ctx);
    for (size_t k = 0; k < constraints_.size(); ++k) {
      z3::expr label = ctx.constant(ctx.int_symbol(static_cast<int>(k)), ctx.bool_sort());
      solver.add(z3::implies(label, Before(x, constraints_[k])));
      labels.push_back(label);
    }
    const z3::check_result result = solver.check(labels);
    if (result == z3::unknown) {
      throw std::runtime_error("Z3 gave up on the deadlock proof: " + solver.reason_unknown());
    }
    if (result == z3::sat) return true;
    const z3::expr_vector unsat_core = solver.unsat_core();
    for (unsigned k = 0; k < unsat_core.size(); ++k) {
      core->push_back(Z3_get_symbol_int(ctx, Z3_get_decl_name(ctx, unsat_core[k].decl())));
    }
    return false;
  }

  std::vector<CycleStep> CycleFromCore(const std::vector<int>& core) const;

 private:
  // before < after, written as a difference atom: Z3's difference-logic solver takes
  // "x - y <= -1" as it stands, while "x < y" is rewritten first and solved 35 times slower.
  static z3::expr Before(const std::vector<z3::expr>& x, const Constraint& c) {
    return x[c.before] - x[c.after] <= -1;
  }

  int NewVar(int rank, int index) {
    vars_.push_back({rank, index});
    return static_cast<int>(vars_.size() - 1);
  }
  void Require(int before, int after, Rule rule, int op = -1) {
    constraints_.push_back({before, after, op, rule});
  }

  // A rank's units: each SEND/RECV alone on a rank without WAITs; otherwise the ops since the
  // previous WAIT, posted at a WAIT, and the ops after the last WAIT, never posted.
  static std::vector<RankUnit> UnitsOf(const std::vector<Action>& program, bool has_wait) {
    std::vector<RankUnit> units;
    std::vector<int> group;
    for (int i = 0; i < static_cast<int>(program.size()); ++i) {
      if (IsComm(program[i].op)) {
        if (has_wait) {
          group.push_back(i);
        } else {
          units.push_back({i, {i}, true});
        }
      } else if (program[i].op == Op::kWait && !group.empty()) {
        units.push_back({i, group, true});
        group.clear();
      }
    }
    if (!group.empty()) units.push_back({group.front(), group, false});
    return units;
  }

  // What the rank waits for before its next action, beyond its last compute.
  struct Blocker {
    int var;
    Rule rule;
  };

  // The rules within one rank.
  void EncodeRank(int r) {
    const auto& program = s_.program[r];
    op_start_[r].assign(program.size(), -1);
    op_end_[r].assign(program.size(), -1);
    const bool has_wait = UsesWaitGroups(program);
    const std::vector<RankUnit> units = UnitsOf(program, has_wait);
    std::vector<int> unit_at(program.size(), -1);  // anchor -> unit
    for (int u = 0; u < static_cast<int>(units.size()); ++u) {
      const RankUnit& unit = units[u];
      const int start = NewVar(r, unit.anchor), end = NewVar(r, unit.anchor);
      for (int op : unit.ops) {
        op_start_[r][op] = start;
        op_end_[r][op] = end;
      }
      Require(start, end, Rule::kStartsFirst);
      if (unit.posted) {
        unit_at[unit.anchor] = u;
      } else {
        Require(start, start, Rule::kNeverPosted);
      }
    }
    int compute = -1;  // variable of the last compute
    std::vector<Blocker> blockers;
    std::map<int, int> stream_end;  // stream -> completion variable of its last lone unit
    std::set<int> met;              // peers this rank has posted a unit with
    std::vector<int> host_waits;    // the set-ups of the rank's last first contact
    for (int i = 0; i < static_cast<int>(program.size()); ++i) {
      const Action& a = program[i];
      if (IsCompute(a.op)) {
        const int t = NewVar(r, i);
        if (compute >= 0) Require(compute, t, Rule::kComputeOrder);
        for (const Blocker& b : blockers) Require(b.var, t, b.rule);
        // The compute now holds what follows, but for the last WAIT's group, which holds every
        // unit after it directly (the shorter cycles).
        std::erase_if(blockers, [](const Blocker& b) { return b.rule != Rule::kWaitBlocks; });
        if (!has_wait) {
          for (int recv : InputReceives(s_, routes_, receives_, r, i)) {
            Require(op_end_[r][recv], t, Rule::kInputRecv);
          }
        }
        compute = t;
        continue;
      }
      if (IsWaitSend(a.op)) {
        const int send = waited_sends_[r].empty() ? -1 : waited_sends_[r][i];
        if (send >= 0) blockers.push_back({op_end_[r][send], Rule::kSendWaitBlocks});
        continue;
      }
      if (unit_at[i] < 0) continue;  // computes above; a WAIT with nothing to post; the rest
      const RankUnit& unit = units[unit_at[i]];
      const int start = op_start_[r][unit.ops.front()], end = op_end_[r][unit.ops.front()];
      // The unit starts after the computes before it and what blocks the rank.
      if (compute >= 0) Require(compute, start, Rule::kAfterCompute);
      for (const Blocker& b : blockers) Require(b.var, start, b.rule);
      // Pair layout: a first contact is reached by the host, which runs ahead of the device and
      // waits only at the set-ups of its earlier first contacts.
      std::vector<int> first_peers;
      if (model_ == CommModel::kNccl && streams_ == StreamLayout::kPair) {
        for (int op : unit.ops) {
          const int peer = messages_.peer[r][op];
          if (peer >= 0 && met.insert(peer).second) first_peers.push_back(peer);
        }
      }
      if (!first_peers.empty()) {
        const int reached = NewVar(r, unit.anchor);
        for (int setup : host_waits) Require(setup, reached, Rule::kSetupBlocks);
        host_waits.clear();
        for (int peer : first_peers) {
          const int setup = SetupOf(r, peer, unit.anchor);
          Require(reached, setup, Rule::kSetupPosted);
          Require(setup, start, Rule::kSetupBlocks);
          blockers.push_back({setup, Rule::kSetupBlocks});
          host_waits.push_back(setup);
        }
      }
      if (has_wait) {
        blockers = {{end, Rule::kWaitBlocks}};  // everything before holds this group too
      } else if (model_ == CommModel::kNccl) {
        const int op = unit.ops.front();
        const int stream = StreamOf(streams_, messages_.peer[r][op], IsSend(program[op].op));
        if (auto it = stream_end.find(stream); it != stream_end.end()) {
          Require(it->second, start, Rule::kStreamOrder);
        }
        stream_end[stream] = end;
      }
    }
  }

  // The variable of the set-up of `rank`'s pair with `peer`; `anchor` posts `rank`'s side.
  int SetupOf(int rank, int peer, int anchor) {
    const std::pair<int, int> pair{std::min(rank, peer), std::max(rank, peer)};
    auto [it, inserted] = setup_of_pair_.try_emplace(pair, static_cast<int>(setups_.size()));
    if (inserted) setups_.push_back({NewVar(-1, it->second), pair.first, pair.second});
    PairSetup& setup = setups_[it->second];
    (rank == pair.first ? setup.low_anchor : setup.high_anchor) = anchor;
    return setup.var;
  }

  // The messages: rendezvous (nccl) or a receive after its send's posting (eager).
  void EncodeMessages(int r) {
    const auto& program = s_.program[r];
    for (int i = 0; i < static_cast<int>(program.size()); ++i) {
      if (!IsComm(program[i].op)) continue;
      const bool recv = IsRecv(program[i].op);
      const Endpoint other = messages_.partner[r][i];
      if (!other.valid()) {
        if (model_ == CommModel::kNccl || recv)
          Require(op_end_[r][i], op_end_[r][i], Rule::kNoPartner, i);
      } else if (model_ == CommModel::kNccl) {
        Require(op_start_[other.rank][other.index], op_end_[r][i], Rule::kRendezvous, i);
      } else if (recv) {
        Require(op_start_[other.rank][other.index], op_end_[r][i], Rule::kSendPosted, i);
      }
    }
  }

  std::string Explain(const Constraint& c, const Variable& next) const;

  struct PairSetup {
    int var = -1;
    int low = 0, high = 0;                   // the ranks
    int low_anchor = -1, high_anchor = -1;   // each side's first unit with the other, once posted
  };

  const Schedule& s_;
  const RouteIndex& routes_;
  const Messages& messages_;
  CommModel model_;
  StreamLayout streams_;
  ReceiveIndex receives_;
  std::vector<std::vector<int32_t>> waited_sends_;
  std::vector<PairSetup> setups_;
  std::map<std::pair<int, int>, int> setup_of_pair_;  // (low rank, high rank) -> its set-up
  std::vector<Variable> vars_;
  std::vector<Constraint> constraints_;
  std::vector<std::vector<int32_t>> op_start_, op_end_;  // [rank][op] -> unit variables
};

std::string Encoding::Explain(const Constraint& c, const Variable& next) const {
  const std::string them = Where(s_, next.rank, next.index);
  const int rank = vars_[c.after].rank;
  switch (c.rule) {
    case Rule::kComputeOrder:
      return fmt::format("runs after {} (computes in program order)", them);
    case Rule::kAfterCompute:
      return fmt::format("starts after {} finishes (computes written before it)", them);
    case Rule::kStreamOrder:
      return fmt::format("starts after {} completes (they share a communication stream, --streams "
                         "{})",
                         them, StreamLayoutName(streams_));
    case Rule::kWaitBlocks:
      return fmt::format("runs after {} completes (a WAIT blocks its rank)", them);
    case Rule::kSendWaitBlocks:
      return fmt::format("runs after {} completes (a WAIT_SEND before it blocks the rank until "
                         "that SEND completes)",
                         them);
    case Rule::kSetupPosted:
    case Rule::kSetupBlocks:
      return fmt::format("runs after the set-up of a pair communicator, which needs {} reached "
                         "by its rank's host (lazy set-up at the first op between two ranks, "
                         "--streams pair)",
                         them);
    case Rule::kSetupNoPeer:
      return "never gets past the set-up of a pair communicator: the peer has no op with it";
    case Rule::kInputRecv:
      return fmt::format("runs after {}, which brings its input", them);
    case Rule::kStartsFirst:
      return fmt::format("completes after {} starts", them);
    case Rule::kRendezvous: {
      const Endpoint other = messages_.partner[rank][c.op];
      return fmt::format("completes only after its partner {} starts (rendezvous)",
                         Where(s_, other.rank, other.index));
    }
    case Rule::kSendPosted: {
      const Endpoint other = messages_.partner[rank][c.op];
      return fmt::format("completes only after its send {} is posted",
                         Where(s_, other.rank, other.index));
    }
    case Rule::kNoPartner:
      return "never completes: it has no partner (see matching)";
    case Rule::kNeverPosted:
      return "is never posted: it comes after its rank's last WAIT";
  }
  return "waits";
}

// The shortest cycle among the core's constraints, as steps: each waits for the next.
std::vector<CycleStep> Encoding::CycleFromCore(const std::vector<int>& core) const {
  // waits_for[v]: constraints in the core whose `after` is v.
  std::map<int, std::vector<int>> waits_for;
  for (int k : core) waits_for[constraints_[k].after].push_back(k);
  std::vector<int> best;  // constraint ids, the first's `after` waiting for its `before`, ...
  for (const auto& [start, unused] : waits_for) {
    std::map<int, int> via;  // variable -> the constraint by which it was reached
    std::deque<int> queue{start};
    via[start] = -1;
    std::vector<int> found;
    while (!queue.empty() && found.empty()) {
      const int v = queue.front();
      queue.pop_front();
      auto it = waits_for.find(v);
      if (it == waits_for.end()) continue;
      for (int k : it->second) {
        const int w = constraints_[k].before;
        if (w == start) {
          found.push_back(k);
          for (int x = v; x != start; x = constraints_[via[x]].after) found.push_back(via[x]);
          std::reverse(found.begin(), found.end());
          break;
        }
        if (via.count(w)) continue;
        via[w] = k;
        queue.push_back(w);
      }
    }
    if (!found.empty() && (best.empty() || found.size() < best.size())) best = found;
  }
  // best[j]: after = v_j waits for before = v_{j+1}; in order start = v_0 ... v_n = start.
  // A pair's set-up (rank -1) is no action: the step waiting for it waits for what it waits for.
  std::vector<CycleStep> steps;
  for (size_t j = 0; j < best.size(); ++j) {
    const Constraint& c = constraints_[best[j]];
    const Variable& v = vars_[c.after];
    if (v.rank < 0) continue;
    const Variable* next = &vars_[c.before];
    if (next->rank < 0) next = &vars_[constraints_[best[(j + 1) % best.size()]].before];
    const bool same_action = next->rank == v.rank && next->index == v.index && c.before != c.after;
    if (same_action) continue;  // a unit's start and completion are one step
    const int index = c.op >= 0 ? c.op : v.index;
    steps.push_back({v.rank, index, ToString(s_.program[v.rank][index]), Explain(c, *next)});
  }
  if (!steps.empty() || best.empty()) return steps;
  // A cycle within one action: a unit that waits for itself (a WAIT_SEND before the WAIT that
  // posts its SEND), or a set-up whose peer never posts its side.
  for (int k : best) {
    const Constraint& c = constraints_[k];
    const Variable& v = vars_[c.after];
    if (v.rank >= 0 && c.rule != Rule::kStartsFirst) {
      steps.push_back({v.rank, v.index, ToString(s_.program[v.rank][v.index]), Explain(c, v)});
      return steps;
    }
  }
  const PairSetup& setup = setups_[vars_[constraints_[best.front()].after].index];
  const bool low = setup.low_anchor >= 0;
  const int rank = low ? setup.low : setup.high;
  const int anchor = low ? setup.low_anchor : setup.high_anchor;
  steps.push_back({rank, anchor, ToString(s_.program[rank][anchor]),
                   Explain(constraints_[best.front()], {rank, anchor})});
  return steps;
}

}  // namespace

std::optional<Z3Verdict> ProveWithZ3(const Schedule& schedule, const RouteIndex& routes,
                                     const Messages& messages, CommModel model,
                                     StreamLayout streams, const ProgressCallback& progress) {
  const auto begin = std::chrono::steady_clock::now();
  Encoding encoding(schedule, routes, messages, model, streams);
  encoding.Build(progress);
  if (progress) progress("deadlock: Z3 solving", 0, 0);
  Z3Verdict verdict;
  verdict.variables = encoding.variables();
  verdict.constraints = encoding.constraints();
  std::vector<int> core;
  verdict.deadlock_free = encoding.Solve(&core);
  if (!verdict.deadlock_free && progress) progress("deadlock: cycle from Z3's unsat core", 0, 0);
  if (!verdict.deadlock_free) verdict.cycle = encoding.CycleFromCore(core);
  verdict.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  return verdict;
}

bool Z3Built() { return true; }

}  // namespace pipeproof::verify_internal

#else  // no Z3 in this build

namespace pipeproof::verify_internal {
std::optional<Z3Verdict> ProveWithZ3(const Schedule&, const RouteIndex&, const Messages&,
                                     CommModel, StreamLayout, const ProgressCallback&) {
  return std::nullopt;
}
bool Z3Built() { return false; }
}  // namespace pipeproof::verify_internal

#endif

namespace pipeproof {
bool HaveZ3() { return verify_internal::Z3Built(); }
}  // namespace pipeproof
