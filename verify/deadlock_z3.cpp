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

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <set>

#include "verify/internal.h"

#ifdef PIPEPROOF_HAVE_Z3
#include <z3++.h>
#endif

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

enum class VarKind : uint8_t { kCompute, kUnitStart, kUnitEnd, kReached, kSetup };

struct Variable {
  int32_t rank;   // -1 for a pair's set-up
  int32_t index;  // the compute, or the unit's WAIT / lone op / first op; a set-up: its id
  VarKind kind;
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

// What a solve came to: sat, unsat (with the core of tracked constraints), or neither (a cap was
// reached, or Z3 gave up), with Z3's reason.
struct Solved {
  enum class Outcome { kSat, kUnsat, kUnknown } outcome = Outcome::kUnknown;
  std::vector<int> core;
  std::string reason;
};

#ifdef PIPEPROOF_HAVE_Z3
// Integer times (a timing with real times exists iff one with integer times does, every
// constraint being x - y <= -1) and Z3's Bellman-Ford difference-logic solver rather than its
// general simplex: measured on DualPipe with 32 ranks and 128 microbatches, 2 s instead of 66 s
// (and 460 s with reals under QF_RDL's default set-up). The caps: Z3's own timeout and memory
// limit, past which it answers "unknown".
z3::solver DifferenceLogicSolver(z3::context& ctx, const ProofRequest& caps) {
  z3::solver solver(ctx);
  z3::params params(ctx);
  params.set("arith.solver", 1u);
  params.set("timeout", static_cast<unsigned>(std::clamp(caps.timeout_s * 1000, 1.0, 4e9)));
  solver.set(params);
  return solver;
}
#endif

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

  // The certificate check: each variable takes the place of its event in the simulated timing,
  // and every constraint "before < after" must hold of those integers. It is the very formula Z3
  // is given in a search (Before(): x[before] - x[after] <= -1, which over the integers is
  // x[before] < x[after]), evaluated at one point instead of solved for, so an order that passes
  // is a model of the whole encoding: a proof that a complete execution exists, whoever found
  // the order. "" when it holds; else which constraint it breaks, or which event it lacks.
  std::string CheckCertificate(const EventOrder& order) const {
    std::vector<int64_t> x(vars_.size());
    for (size_t v = 0; v < vars_.size(); ++v) {
      x[v] = PlaceOf(vars_[v], order);
      if (x[v] < 0) return fmt::format("the simulated timing has no {}", DescribeVar(vars_[v]));
    }
    for (const Constraint& c : constraints_) {
      if (!(x[c.before] < x[c.after])) {
        return fmt::format("the simulated timing puts {} (place {}) no later than {} (place {}), "
                           "which must come first: {}",
                           DescribeVar(vars_[c.after]), x[c.after], DescribeVar(vars_[c.before]), x[c.before],
                           Explain(c, vars_[c.before]));
      }
    }
    return "";
  }

  // The constraints among the variables of a cycle of actions (each waits for the next): a
  // deadlock's proof need look at nothing else.
  std::vector<int> ConstraintsOfCycle(const std::vector<CycleStep>& cycle) const {
    std::set<std::pair<int, int>> actions;  // (rank, index): steps, and the units of their ops
    std::set<int> ranks;
    for (const CycleStep& step : cycle) {
      actions.insert({step.rank, step.index});
      ranks.insert(step.rank);
      if (step.rank < static_cast<int>(op_start_.size()) && op_start_[step.rank][step.index] >= 0) {
        actions.insert({step.rank, vars_[op_start_[step.rank][step.index]].index});
      }
    }
    std::vector<bool> chosen(vars_.size(), false);
    for (size_t v = 0; v < vars_.size(); ++v) {
      const Variable& var = vars_[v];
      chosen[v] = var.kind == VarKind::kSetup ? ranks.count(setups_[var.index].low) && ranks.count(setups_[var.index].high)
                                              : actions.count({var.rank, var.index}) > 0;
    }
    std::vector<int> out;
    for (size_t k = 0; k < constraints_.size(); ++k) {
      if (chosen[constraints_[k].before] && chosen[constraints_[k].after]) out.push_back(static_cast<int>(k));
    }
    return out;
  }

  // Z3 on the constraints `which` (all when empty), each tracked by a Boolean label assumed true,
  // so one solve gives the verdict and, when unsatisfiable, the core (on the 32 x 128 DualPipe
  // this is no slower than an untracked solve).
  Solved Solve(const std::vector<int>& which, const ProofRequest& caps) const {
    Solved out;
#ifdef PIPEPROOF_HAVE_Z3
    try {
      z3::set_param("memory_max_size", static_cast<int>(std::clamp<int64_t>(caps.memory_mb, 1, 1 << 30)));
      z3::context ctx;
      // Z3 constants only for the variables the chosen constraints name: a cycle's proof of a
      // schedule of millions of actions looks at a few dozen.
      z3::expr_vector x(ctx);
      std::vector<int32_t> slot(vars_.size(), -1);
      auto var = [&](int v) {
        if (slot[v] < 0) {
          slot[v] = static_cast<int32_t>(x.size());
          x.push_back(ctx.constant(ctx.int_symbol(v), ctx.int_sort()));
        }
        return x[slot[v]];
      };
      z3::solver solver = DifferenceLogicSolver(ctx, caps);
      z3::expr_vector labels(ctx);
      auto add = [&](size_t k) {
        z3::expr label = ctx.constant(ctx.int_symbol(static_cast<int>(k)), ctx.bool_sort());
        solver.add(z3::implies(label, Before(var(constraints_[k].before), var(constraints_[k].after))));
        labels.push_back(label);
      };
      if (which.empty()) {
        for (size_t k = 0; k < constraints_.size(); ++k) add(k);
      } else {
        for (int k : which) add(static_cast<size_t>(k));
      }
      const z3::check_result result = solver.check(labels);
      if (result == z3::unknown) {
        out.reason = solver.reason_unknown();
        return out;
      }
      if (result == z3::sat) {
        out.outcome = Solved::Outcome::kSat;
        return out;
      }
      out.outcome = Solved::Outcome::kUnsat;
      const z3::expr_vector unsat_core = solver.unsat_core();
      for (unsigned k = 0; k < unsat_core.size(); ++k) {
        out.core.push_back(Z3_get_symbol_int(ctx, Z3_get_decl_name(ctx, unsat_core[k].decl())));
      }
    } catch (const z3::exception& e) {  // e.g. past memory_max_size
      out.outcome = Solved::Outcome::kUnknown;
      out.reason = e.msg();
    }
#else
    (void)which;
    (void)caps;
#endif
    return out;
  }

  std::vector<CycleStep> CycleFromCore(const std::vector<int>& core) const;

 private:
#ifdef PIPEPROOF_HAVE_Z3
  // before < after, written as a difference atom: Z3's difference-logic solver takes
  // "x - y <= -1" as it stands, while "x < y" is rewritten first and solved 35 times slower.
  static z3::expr Before(const z3::expr& before, const z3::expr& after) { return before - after <= -1; }
#endif

  int64_t PlaceOf(const Variable& v, const EventOrder& order) const {
    auto find = [](const auto& map, std::pair<int, int> key) -> int64_t {
      auto it = map.find(key);
      return it == map.end() ? -1 : it->second;
    };
    switch (v.kind) {
      case VarKind::kCompute:
      case VarKind::kUnitStart: return order.at[v.rank][v.index];
      case VarKind::kUnitEnd: return order.end[v.rank][v.index];
      case VarKind::kReached: return find(order.reached, {v.rank, v.index});
      case VarKind::kSetup: return find(order.setup, {setups_[v.index].low, setups_[v.index].high});
    }
    return -1;
  }

  std::string DescribeVar(const Variable& v) const {
    switch (v.kind) {
      case VarKind::kCompute: return fmt::format("the run of {}", Where(s_, v.rank, v.index));
      case VarKind::kUnitStart: return fmt::format("the start of the unit of {}", Where(s_, v.rank, v.index));
      case VarKind::kUnitEnd: return fmt::format("the completion of the unit of {}", Where(s_, v.rank, v.index));
      case VarKind::kReached: return fmt::format("rank {}'s host reaching {}", v.rank, Where(s_, v.rank, v.index));
      case VarKind::kSetup:
        return fmt::format("the set-up of the pair communicator of ranks {} and {}", setups_[v.index].low,
                           setups_[v.index].high);
    }
    return "an event";
  }

  int NewVar(int rank, int index, VarKind kind) {
    vars_.push_back({rank, index, kind});
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
      const int start = NewVar(r, unit.anchor, VarKind::kUnitStart), end = NewVar(r, unit.anchor, VarKind::kUnitEnd);
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
        const int t = NewVar(r, i, VarKind::kCompute);
        if (compute >= 0) Require(compute, t, Rule::kComputeOrder);
        for (const Blocker& b : blockers) Require(b.var, t, b.rule);
        // The compute now holds what follows, but for the last WAIT's group, which holds every
        // unit after it directly (the shorter cycles).
        std::erase_if(blockers, [](const Blocker& b) { return b.rule != Rule::kWaitBlocks; });
        if (!has_wait) {
          InputReceives(s_, routes_, receives_, r, i, inputs_);
          for (int recv : inputs_) {
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
        const int reached = NewVar(r, unit.anchor, VarKind::kReached);
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
    if (inserted) setups_.push_back({NewVar(-1, it->second, VarKind::kSetup), pair.first, pair.second});
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
  std::vector<int32_t> inputs_;                          // EncodeRank: a compute's input receives
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
                   Explain(constraints_[best.front()], {rank, anchor, VarKind::kUnitStart})});
  return steps;
}

double SecondsSince(std::chrono::steady_clock::time_point begin) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
}

}  // namespace

Proof ProveDeadlockVerdict(const Schedule& schedule, const RouteIndex& routes, const Messages& messages,
                           CommModel model, StreamLayout streams, const SimulationResult& sim,
                           const ProofRequest& request) {
  using Outcome = ProofVerdict::Outcome;
  const auto begin = std::chrono::steady_clock::now();
  Encoding encoding(schedule, routes, messages, model, streams);
  encoding.Build(request.progress);
  Proof proof;
  ProofVerdict& v = proof.verdict;
  v.variables = encoding.variables();
  v.constraints = encoding.constraints();
  auto done = [&](Outcome outcome) {
    v.outcome = outcome;
    v.seconds = SecondsSince(begin);
    return proof;
  };
  auto search = [&](const std::vector<int>& which) {
    if (request.progress) request.progress("deadlock: Z3 solving", 0, 0);
    v.proved_constraints = which.empty() ? v.constraints : static_cast<int>(which.size());
    return encoding.Solve(which, request);
  };
  if (!request.search && sim.timeline.complete) {
    if (request.progress) request.progress("deadlock: checking the certificate", 0, 0);
    v.method = "certificate";
    v.note = encoding.CheckCertificate(sim.order);
    v.proved_constraints = v.constraints;
    proof.refused = !v.note.empty();
    return done(proof.refused ? Outcome::kSkipped : Outcome::kDeadlockFree);
  }
  if (!request.search && !sim.cycle.empty() && HaveZ3()) {
    const Solved cycle = search(encoding.ConstraintsOfCycle(sim.cycle));
    if (cycle.outcome == Solved::Outcome::kUnsat) {
      v.method = "cycle";
      proof.cycle = encoding.CycleFromCore(cycle.core);
      return done(Outcome::kDeadlock);
    }
    // The cycle's own constraints do not contradict each other: decide on all of them.
  }
  if (!HaveZ3()) return done(Outcome::kNoZ3);
  v.method = "search";
  const Solved all = search({});
  if (all.outcome == Solved::Outcome::kUnknown) {
    v.note = all.reason == "timeout" || all.reason == "canceled"
                 ? fmt::format("Z3 reached its time cap, {:g} s (--z3-timeout)", request.timeout_s)
             : all.reason.find("memory") != std::string::npos
                 ? fmt::format("Z3 reached its memory cap, {} MB (--z3-memory)", request.memory_mb)
                 : all.reason;
    return done(Outcome::kSkipped);
  }
  if (all.outcome == Solved::Outcome::kSat) return done(Outcome::kDeadlockFree);
  if (request.progress) request.progress("deadlock: cycle from Z3's unsat core", 0, 0);
  proof.cycle = encoding.CycleFromCore(all.core);
  return done(Outcome::kDeadlock);
}

std::string CheckCertificate(const Schedule& schedule, const RouteIndex& routes, const Messages& messages,
                             CommModel model, StreamLayout streams, const EventOrder& order) {
  Encoding encoding(schedule, routes, messages, model, streams);
  encoding.Build({});
  return encoding.CheckCertificate(order);
}

bool Z3Built() {
#ifdef PIPEPROOF_HAVE_Z3
  return true;
#else
  return false;
#endif
}

}  // namespace pipeproof::verify_internal

namespace pipeproof {
bool HaveZ3() { return verify_internal::Z3Built(); }
}  // namespace pipeproof
