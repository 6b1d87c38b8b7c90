// The deadlock proof with Z3, written apart from the event simulation so the two verdicts check
// each other (DESIGN.md, "deadlock"). One real variable per compute (when it runs) and two per
// communication unit (when it starts, when it completes). Every rule of the communication model
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

namespace pipeproof::verify_internal {
namespace {

enum class Rule : uint8_t {
  kComputeOrder,  // computes in program order
  kAfterCompute,  // a unit starts after the computes written before it
  kStreamOrder,   // nccl: units of a rank without WAITs in program order
  kWaitBlocks,    // a WAIT's group completes before the rank goes on
  kInputRecv,     // a compute after the receive that brings its input
  kStartsFirst,   // a unit starts before it completes
  kRendezvous,    // nccl: an op completes after its partner's unit starts
  kSendPosted,    // eager: a receive completes after its send is posted
  kNoPartner,     // an op without a partner: unsatisfiable on its own
  kNeverPosted,   // ops after the last WAIT: unsatisfiable on its own
};

struct Variable {
  int32_t rank;
  int32_t index;  // the compute, or the unit's WAIT / lone op / first op
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
  Encoding(const Schedule& s, const RouteIndex& routes, const Messages& messages, CommModel model)
      : s_(s), routes_(routes), messages_(messages), model_(model), receives_(s, messages) {}

  void Build(const ProgressCallback& progress) {
    op_start_.resize(s_.ranks);
    op_end_.resize(s_.ranks);
    for (int r = 0; r < s_.ranks; ++r) {
      if (progress) progress("deadlock: Z3 encoding", r, s_.ranks);
      EncodeRank(r);
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

  // The rules within one rank.
  void EncodeRank(int r) {
    const auto& program = s_.program[r];
    op_start_[r].assign(program.size(), -1);
    op_end_[r].assign(program.size(), -1);
    bool has_wait = false;
    for (const Action& a : program) has_wait = has_wait || a.op == Op::kWait;
    int compute = -1;   // variable of the last compute
    int unit_end = -1;  // completion variable of the last unit
    bool blocks_next_compute = false;
    std::vector<int> group;
    auto open_unit = [&](int index, const std::vector<int>& ops) {
      const int start = NewVar(r, index), end = NewVar(r, index);
      for (int op : ops) {
        op_start_[r][op] = start;
        op_end_[r][op] = end;
      }
      if (compute >= 0) Require(compute, start, Rule::kAfterCompute);
      if (unit_end >= 0 && (has_wait || model_ == CommModel::kNccl)) {
        Require(unit_end, start, has_wait ? Rule::kWaitBlocks : Rule::kStreamOrder);
      }
      Require(start, end, Rule::kStartsFirst);
      unit_end = end;
    };
    for (int i = 0; i < static_cast<int>(program.size()); ++i) {
      const Action& a = program[i];
      if (IsCompute(a.op)) {
        const int t = NewVar(r, i);
        if (compute >= 0) Require(compute, t, Rule::kComputeOrder);
        if (blocks_next_compute) Require(unit_end, t, Rule::kWaitBlocks);
        blocks_next_compute = false;
        if (!has_wait) {
          for (int recv : InputReceives(s_, routes_, receives_, r, i)) {
            Require(op_end_[r][recv], t, Rule::kInputRecv);
          }
        }
        compute = t;
      } else if (IsComm(a.op)) {
        if (has_wait) {
          group.push_back(i);
        } else {
          open_unit(i, {i});
        }
      } else if (!group.empty()) {
        open_unit(i, group);
        group.clear();
        blocks_next_compute = true;
      }
    }
    if (!group.empty()) {  // nothing posts these
      const int start = NewVar(r, group.front()), end = NewVar(r, group.front());
      for (int op : group) {
        op_start_[r][op] = start;
        op_end_[r][op] = end;
      }
      Require(start, start, Rule::kNeverPosted);
      Require(start, end, Rule::kStartsFirst);
    }
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

  const Schedule& s_;
  const RouteIndex& routes_;
  const Messages& messages_;
  CommModel model_;
  ReceiveIndex receives_;
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
      return fmt::format("starts after {} completes (one communication stream)", them);
    case Rule::kWaitBlocks:
      return fmt::format("runs after {} completes (a WAIT blocks its rank)", them);
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
  std::vector<CycleStep> steps;
  for (size_t j = 0; j < best.size(); ++j) {
    const Constraint& c = constraints_[best[j]];
    const Variable& v = vars_[c.after];
    const Variable& next = vars_[c.before];
    const bool same_action = next.rank == v.rank && next.index == v.index && c.before != c.after;
    if (same_action) continue;  // a unit's start and completion are one step
    const int index = c.op >= 0 ? c.op : v.index;
    steps.push_back({v.rank, index, ToString(s_.program[v.rank][index]), Explain(c, next)});
  }
  return steps;
}

}  // namespace

std::optional<Z3Verdict> ProveWithZ3(const Schedule& schedule, const RouteIndex& routes,
                                     const Messages& messages, CommModel model,
                                     const ProgressCallback& progress) {
  const auto begin = std::chrono::steady_clock::now();
  Encoding encoding(schedule, routes, messages, model);
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
                                     CommModel, const ProgressCallback&) {
  return std::nullopt;
}
bool Z3Built() { return false; }
}  // namespace pipeproof::verify_internal

#endif

namespace pipeproof {
bool HaveZ3() { return verify_internal::Z3Built(); }
}  // namespace pipeproof
