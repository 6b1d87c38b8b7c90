#include "usercode/trace_check.h"

#include "verify/verify.h"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

namespace pipeproof {

std::string_view TraceProblemKindName(TraceProblem::Kind kind) {
  switch (kind) {
    case TraceProblem::Kind::kMissingTrace:
      return "missing trace";
    case TraceProblem::Kind::kMismatch:
      return "mismatch";
    case TraceProblem::Kind::kUnmatched:
      return "unmatched";
    case TraceProblem::Kind::kError:
      return "error";
    case TraceProblem::Kind::kInconsistent:
      return "inconsistent";
  }
  return "?";
}

namespace {

bool IsSend(const TraceCall& c) { return c.kind == static_cast<uint8_t>(CallKind::kSend); }
bool Completed(const TraceCall& c) { return c.flags & kCallCompleted; }

std::string Bytes(uint64_t n) {
  if (n >= (uint64_t{1} << 30)) return fmt::format("{:.3g} GiB", n / double(uint64_t{1} << 30));
  if (n >= (uint64_t{1} << 20)) return fmt::format("{:.3g} MiB", n / double(uint64_t{1} << 20));
  if (n >= 1024) return fmt::format("{:.3g} KiB", n / 1024.0);
  return fmt::format("{} B", n);
}

std::string Seconds(uint64_t ns) { return fmt::format("{:.6f} s", ns / 1e9); }

// Every call's peer as a trace rank, and the channels (communicator, sender, receiver) on which
// NCCL matches sends with receives in order.
class RunIndex {
 public:
  struct Channel {
    uint64_t comm = 0;
    int from = 0;
    int to = 0;
    std::vector<int64_t> sends;  // call indices in the sender's trace
    std::vector<int64_t> recvs;  // call indices in the receiver's trace
  };
  struct Resolved {
    int peer = -1;  // the peer's trace rank; -1 when it has none
    int64_t channel = -1;
    int64_t position = -1;  // place among the channel's sends (or receives)
  };

  explicit RunIndex(const std::vector<Trace>& traces) : traces_(traces) {
    for (size_t i = 0; i < traces.size(); ++i) {
      const int r = traces[i].rank();
      if (r >= static_cast<int>(by_rank_.size())) by_rank_.resize(r + 1, -1);
      by_rank_[r] = static_cast<int>(i);
    }
    LearnMembers();
    for (const Trace& t : traces) ResolveCalls(t);
    ReportMissingTraces();
    for (const Trace& t : traces) IndexUnits(t);
  }

  const std::vector<Trace>& traces() const { return traces_; }
  bool Has(int rank) const {
    return rank >= 0 && rank < static_cast<int>(by_rank_.size()) && by_rank_[rank] >= 0;
  }
  const Trace& trace(int rank) const { return traces_[by_rank_[rank]]; }
  const TraceCall& call(const CallRef& c) const { return trace(c.rank).calls[c.index]; }
  const Resolved& resolved(const CallRef& c) const { return resolved_[by_rank_[c.rank]][c.index]; }
  const std::vector<Channel>& channels() const { return channels_; }
  uint64_t CommId(const CallRef& c) const { return trace(c.rank).comms[call(c).comm].id; }
  // The calls of each unit of `rank`, in call order.
  const std::vector<std::vector<int64_t>>& units(int rank) const { return units_[by_rank_[rank]]; }
  std::vector<TraceProblem>& problems() { return problems_; }
  std::vector<std::string>& notes() { return notes_; }

  CallRef Partner(const CallRef& c) const {
    const Resolved& r = resolved(c);
    if (r.channel < 0) return {};
    const Channel& ch = channels_[r.channel];
    if (IsSend(call(c))) {
      if (r.position < static_cast<int64_t>(ch.recvs.size())) return {ch.to, ch.recvs[r.position]};
    } else if (r.position < static_cast<int64_t>(ch.sends.size())) {
      return {ch.from, ch.sends[r.position]};
    }
    return {};
  }

  // The first unit of `rank` with a call that never completed, or -1.
  int64_t BlockedUnit(int rank) const {
    const auto& us = units(rank);
    for (size_t u = 0; u < us.size(); ++u) {
      for (int64_t i : us[u]) {
        if (!Completed(trace(rank).calls[i])) return static_cast<int64_t>(u);
      }
    }
    return -1;
  }

 private:
  struct Members {
    int nranks = 0;
    std::map<int, int> rank_of;  // communicator rank -> trace rank
  };

  void LearnMembers() {
    std::set<uint64_t> unresolved;
    for (const Trace& t : traces_) {
      for (const TraceComm& c : t.comms) {
        if (c.nranks < 0) {
          unresolved.insert(c.id);
          continue;
        }
        Members& m = members_[c.id];
        if (m.nranks && m.nranks != c.nranks) {
          notes_.push_back(
              fmt::format("communicator {:#018x} has {} ranks in one trace and {} in another", c.id,
                          m.nranks, c.nranks));
        }
        m.nranks = c.nranks;
        auto [it, fresh] = m.rank_of.emplace(c.rank, t.rank());
        if (!fresh && it->second != t.rank()) {
          TraceProblem p;
          p.kind = TraceProblem::Kind::kInconsistent;
          p.message = fmt::format("ranks {} and {} both claim rank {} of communicator {:#018x}",
                                  it->second, t.rank(), c.rank, c.id);
          problems_.push_back(std::move(p));
        }
      }
    }
    for (uint64_t id : unresolved) {
      notes_.push_back(
          fmt::format("communicator {:#018x} never told its size (its init had not completed): "
                      "calls on it are not matched",
                      id));
    }
  }

  void ResolveCalls(const Trace& t) {
    auto& out = resolved_.emplace_back(t.calls.size());
    for (size_t i = 0; i < t.calls.size(); ++i) {
      const TraceCall& c = t.calls[i];
      const TraceComm& comm = t.comms[c.comm];
      auto m = members_.find(comm.id);
      if (comm.nranks < 0 || m == members_.end()) continue;
      auto peer = m->second.rank_of.find(c.peer);
      if (peer == m->second.rank_of.end()) {
        ++missing_[{comm.id, c.peer}];
        continue;
      }
      const int q = peer->second;
      const bool send = IsSend(c);
      const auto key = std::make_tuple(comm.id, send ? t.rank() : q, send ? q : t.rank());
      auto [it, fresh] = channel_of_.emplace(key, static_cast<int64_t>(channels_.size()));
      if (fresh) channels_.push_back({comm.id, std::get<1>(key), std::get<2>(key), {}, {}});
      Channel& ch = channels_[it->second];
      auto& list = send ? ch.sends : ch.recvs;
      out[i] = {q, it->second, static_cast<int64_t>(list.size())};
      list.push_back(static_cast<int64_t>(i));
    }
  }

  void ReportMissingTraces() {
    for (const auto& [where, calls] : missing_) {
      const auto& [id, comm_rank] = where;
      TraceProblem p;
      p.kind = TraceProblem::Kind::kMissingTrace;
      p.message = fmt::format(
          "rank {} of communicator {:#018x} left no trace: {} calls to or from it cannot be "
          "checked "
          "(did that process die by SIGKILL, or run without the interposer?)",
          comm_rank, id, calls);
      problems_.push_back(std::move(p));
    }
  }

  void IndexUnits(const Trace& t) {
    auto& us = units_.emplace_back();
    for (size_t i = 0; i < t.calls.size(); ++i) {
      const uint64_t u = t.calls[i].unit;
      if (u >= us.size()) us.resize(u + 1);
      us[u].push_back(static_cast<int64_t>(i));
    }
  }

  const std::vector<Trace>& traces_;
  std::vector<int> by_rank_;
  std::map<uint64_t, Members> members_;
  std::map<std::pair<uint64_t, int>, int64_t> missing_;
  std::vector<std::vector<Resolved>> resolved_;
  std::map<std::tuple<uint64_t, int, int>, int64_t> channel_of_;
  std::vector<Channel> channels_;
  std::vector<std::vector<std::vector<int64_t>>> units_;
  std::vector<TraceProblem> problems_;
  std::vector<std::string> notes_;
};

std::string UnitName(const TraceCall& c) {
  return c.flags & kCallInGroup ? fmt::format("group #{}", c.unit)
                                : fmt::format("lone call, unit #{}", c.unit);
}

std::string Describe(const RunIndex& run, const CallRef& ref) {
  const TraceCall& c = run.call(ref);
  const RunIndex::Resolved& r = run.resolved(ref);
  const std::string peer = r.peer >= 0 ? fmt::format("rank {}", r.peer)
                                       : fmt::format("communicator rank {} (no trace)", c.peer);
  const int size = NcclDataTypeSize(c.dtype);
  return fmt::format("rank {} call #{} ({} {} x {}{} {} {}, {})", ref.rank, ref.index,
                     IsSend(c) ? "ncclSend" : "ncclRecv", c.count, NcclDataTypeName(c.dtype),
                     size ? " = " + Bytes(c.count * size) : "", IsSend(c) ? "to" : "from", peer,
                     UnitName(c));
}

bool Agree(const TraceCall& a, const TraceCall& b) {
  return a.count == b.count && a.dtype == b.dtype;
}

std::string Disagreement(const TraceCall& send, const TraceCall& recv) {
  std::vector<std::string> parts;
  if (send.count != recv.count)
    parts.push_back(fmt::format("count {} sent, {} expected", send.count, recv.count));
  if (send.dtype != recv.dtype) {
    parts.push_back(fmt::format("{} sent, {} expected", NcclDataTypeName(send.dtype),
                                NcclDataTypeName(recv.dtype)));
  }
  return fmt::format("{}", fmt::join(parts, "; "));
}

// What a run of disagreeing pairs on one channel most likely is.
std::string Pattern(const RunIndex& run, const RunIndex::Channel& ch, size_t k) {
  auto send = [&](size_t i) -> const TraceCall& { return run.call({ch.from, ch.sends[i]}); };
  auto recv = [&](size_t i) -> const TraceCall& { return run.call({ch.to, ch.recvs[i]}); };
  const size_t s = ch.sends.size(), r = ch.recvs.size(), n = std::min(s, r);
  auto all_from = [&](size_t begin, size_t end, auto&& pair_agrees) {
    for (size_t i = begin; i < end; ++i) {
      if (!pair_agrees(i)) return false;
    }
    return true;
  };
  if (k + 1 < n && Agree(send(k), recv(k + 1)) && Agree(send(k + 1), recv(k)) &&
      all_from(k + 2, n, [&](size_t i) { return Agree(send(i), recv(i)); })) {
    return fmt::format(
        "messages #{} and #{} are swapped: rank {} sends them in the other order than rank {} "
        "receives them",
        k, k + 1, ch.from, ch.to);
  }
  if (s > r && all_from(k, r, [&](size_t i) { return Agree(send(i + 1), recv(i)); })) {
    return fmt::format(
        "rank {} is missing a receive for message #{}: its receives from there on meet rank {}'s "
        "sends one later",
        ch.to, k, ch.from);
  }
  if (r > s && all_from(k, s, [&](size_t i) { return Agree(send(i), recv(i + 1)); })) {
    return fmt::format(
        "rank {} is missing a send for message #{}: its sends from there on meet rank {}'s "
        "receives one later",
        ch.from, k, ch.to);
  }
  return "";
}

void CheckChannel(RunIndex& run, const RunIndex::Channel& ch, int64_t& matched,
                  int64_t& left_open) {
  const size_t s = ch.sends.size(), r = ch.recvs.size(), n = std::min(s, r);
  matched += static_cast<int64_t>(n);
  const std::string where =
      fmt::format("rank {} -> rank {} on communicator {:#018x}", ch.from, ch.to, ch.comm);
  std::vector<size_t> bad;
  for (size_t i = 0; i < n; ++i) {
    if (!Agree(run.call({ch.from, ch.sends[i]}), run.call({ch.to, ch.recvs[i]}))) bad.push_back(i);
  }
  if (!bad.empty()) {
    const size_t k = bad.front();
    const CallRef send{ch.from, ch.sends[k]}, recv{ch.to, ch.recvs[k]};
    TraceProblem p;
    p.kind = TraceProblem::Kind::kMismatch;
    p.call = send;
    p.partner = recv;
    p.message = fmt::format("{}: message #{} disagrees ({}): {} meets {}", where, k,
                            Disagreement(run.call(send), run.call(recv)), Describe(run, send),
                            Describe(run, recv));
    if (std::string pattern = Pattern(run, ch, k); !pattern.empty()) p.details.push_back(pattern);
    if (bad.size() > 1)
      p.details.push_back(
          fmt::format("{} of the {} messages on this channel disagree", bad.size(), n));
    for (size_t j = 1; j < bad.size() && j < 4; ++j) {
      p.details.push_back(fmt::format("message #{}: {} meets {}", bad[j],
                                      Describe(run, {ch.from, ch.sends[bad[j]]}),
                                      Describe(run, {ch.to, ch.recvs[bad[j]]})));
    }
    run.problems().push_back(std::move(p));
  }
  if (s != r) {
    const bool sends_left = s > r;
    const CallRef first = sends_left ? CallRef{ch.from, ch.sends[n]} : CallRef{ch.to, ch.recvs[n]};
    const int other = sends_left ? ch.to : ch.from;
    if (!Completed(run.call(first)) && run.Has(other) && run.BlockedUnit(other) >= 0) {
      // The other rank stopped before it got there: the hang explains it, not the matching.
      left_open += static_cast<int64_t>(sends_left ? s - r : r - s);
      return;
    }
    TraceProblem p;
    p.kind = TraceProblem::Kind::kUnmatched;
    p.call = first;
    const size_t extra = sends_left ? s - r : r - s;
    p.message = fmt::format(
        "{}: {} {} no {}: {} (rank {} made {} sends, rank {} made {} receives)", where, extra,
        sends_left ? (extra == 1 ? "send has" : "sends have")
                   : (extra == 1 ? "receive has" : "receives have"),
        sends_left ? "receive" : "send", Describe(run, first), ch.from, s, ch.to, r);
    if (!sends_left && !bad.empty()) {
      // A receive without a send after a run of disagreements: the pattern line said why.
    }
    run.problems().push_back(std::move(p));
  }
}

void CheckErrors(RunIndex& run) {
  for (const Trace& t : run.traces()) {
    std::vector<int64_t> failed;
    for (size_t i = 0; i < t.calls.size(); ++i) {
      if (t.calls[i].flags & kCallError) failed.push_back(static_cast<int64_t>(i));
    }
    if (failed.empty()) continue;
    TraceProblem p;
    p.kind = TraceProblem::Kind::kError;
    p.call = {t.rank(), failed.front()};
    p.message = fmt::format(
        "NCCL returned error {} for {}{}", t.calls[failed.front()].result, Describe(run, p.call),
        failed.size() > 1 ? fmt::format(" and for {} later calls", failed.size() - 1) : "");
    run.problems().push_back(std::move(p));
  }
}

// ---- hangs

// Why a waiting call waits: on another rank (`on` >= 0), or on nothing that will ever come.
struct Wait {
  CallRef call;
  int on = -1;
  std::string why;
};

std::vector<Wait> WaitsOf(const RunIndex& run, int rank, int64_t unit) {
  std::vector<Wait> waits;
  for (int64_t i : run.units(rank)[unit]) {
    const CallRef c{rank, i};
    const TraceCall& call = run.call(c);
    if (Completed(call)) continue;
    Wait w{c, -1, ""};
    const RunIndex::Resolved& res = run.resolved(c);
    if (call.flags & kCallStopped) {
      w.why = "the rank stopped dead here (the fault plan's kill)";
    } else if (!(call.flags & kCallPosted)) {
      w.why = "never handed to NCCL (held back for its group's planned order)";
    } else if (res.peer < 0) {
      w.why = "its peer left no trace";
    } else if (const CallRef partner = run.Partner(c); partner.valid()) {
      const int64_t partner_unit = static_cast<int64_t>(run.call(partner).unit);
      const int64_t peer_blocked = run.BlockedUnit(res.peer);
      if (peer_blocked >= 0 && partner_unit > peer_blocked) {
        w.on = res.peer;
        w.why = fmt::format(
            "its partner is {}, which rank {} has not reached: it is blocked in group #{}",
            Describe(run, partner), res.peer, peer_blocked);
      } else if (peer_blocked == partner_unit) {
        const TraceCall& other = run.call(partner);
        if (other.flags & kCallStopped) {
          w.on = res.peer;  // the stopped rank is where the waits end
          w.why = fmt::format("its partner is {}, before which rank {} stopped dead",
                              Describe(run, partner), res.peer);
        } else if (!(other.flags & kCallPosted)) {
          w.why = fmt::format("its partner {} was never handed to NCCL", Describe(run, partner));
        } else {
          w.why = fmt::format(
              "its partner {} is posted as well, yet neither completed{}", Describe(run, partner),
              Agree(call, other) ? ""
                                 : fmt::format(" ({})", IsSend(call) ? Disagreement(call, other)
                                                                     : Disagreement(other, call)));
        }
      } else {
        continue;  // its partner completed: the group waits for its other calls, not for this one
      }
    } else if (const int64_t peer_blocked = run.BlockedUnit(res.peer); peer_blocked >= 0) {
      w.on = res.peer;
      w.why = fmt::format(
          "rank {} has not made the {} it meets (its {} #{} {} rank {}): it is blocked in group "
          "#{}",
          res.peer, IsSend(call) ? "ncclRecv" : "ncclSend", IsSend(call) ? "receive" : "send",
          res.position, IsSend(call) ? "from" : "to", rank, peer_blocked);
    } else {
      const Trace& peer = run.trace(res.peer);
      w.why = fmt::format(
          "rank {} never makes the {} it meets (its {} #{} {} rank {}): its trace ends with all {} "
          "of its calls completed{}",
          res.peer, IsSend(call) ? "ncclRecv" : "ncclSend", IsSend(call) ? "receive" : "send",
          res.position, IsSend(call) ? "from" : "to", rank, peer.calls.size(),
          peer.ended_on_signal() ? "" : " (it finished)");
    }
    waits.push_back(std::move(w));
  }
  if (waits.empty()) {
    // Every call still open in the group met a partner that completed: the group's end was not
    // seen (the process stopped in between, or completion is only known per group).
    const CallRef first{rank, run.units(rank)[unit].front()};
    waits.push_back({first, -1,
                     "every call of its group met a partner that completed, yet the group's end "
                     "was never seen"});
  }
  return waits;
}

// Units of `rank` that hold calls with `peer`, each as those calls.
std::vector<std::vector<int64_t>> UnitsWith(const RunIndex& run, int rank, int peer) {
  std::vector<std::vector<int64_t>> out;
  for (const auto& unit : run.units(rank)) {
    std::vector<int64_t> with;
    for (int64_t i : unit) {
      if (run.resolved({rank, i}).peer == peer) with.push_back(i);
    }
    if (!with.empty()) out.push_back(std::move(with));
  }
  return out;
}

std::string Ordinal(size_t n) {
  const char* suffix = (n % 100 >= 11 && n % 100 <= 13) ? "th"
                       : n % 10 == 1                    ? "st"
                       : n % 10 == 2                    ? "nd"
                       : n % 10 == 3                    ? "rd"
                                                        : "th";
  return fmt::format("{}{}", n, suffix);
}

// The first call where the orders of `p` and `q` diverge: the first of their groups (counting
// only calls between the two) that does not meet exactly one group of the other.
std::vector<std::string> Divergence(const RunIndex& run, int p, int q) {
  const auto a = UnitsWith(run, p, q), b = UnitsWith(run, q, p);
  auto partner_in = [&](int from, int64_t call, int to, const std::vector<int64_t>& unit) {
    const CallRef partner = run.Partner({from, call});
    return partner.valid() && partner.rank == to &&
           std::find(unit.begin(), unit.end(), partner.index) != unit.end();
  };
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    std::optional<int64_t> odd_a, odd_b;
    if (i < a.size()) {
      for (int64_t c : a[i]) {
        if (i >= b.size() || !partner_in(p, c, q, b[i])) {
          odd_a = c;
          break;
        }
      }
    }
    if (i < b.size()) {
      for (int64_t c : b[i]) {
        if (i >= a.size() || !partner_in(q, c, p, a[i])) {
          odd_b = c;
          break;
        }
      }
    }
    if (!odd_a && !odd_b) continue;
    std::vector<std::string> lines;
    auto group_of = [&](int rank, const std::vector<std::vector<int64_t>>& units) {
      return i < units.size()
                 ? fmt::format("rank {}'s group #{}", rank, run.call({rank, units[i].front()}).unit)
                 : fmt::format("rank {}'s end", rank);
    };
    lines.push_back(
        fmt::format("ranks {} and {} diverge at {} and {} (the {} of their groups with calls to "
                    "each other): up to "
                    "there every such group of one met exactly one of the other",
                    p, q, group_of(p, a), group_of(q, b), Ordinal(i + 1)));
    auto explain = [&](int rank, int64_t call) {
      const CallRef partner = run.Partner({rank, call});
      lines.push_back(fmt::format("  {}: {}", Describe(run, {rank, call}),
                                  partner.valid()
                                      ? "meets " + Describe(run, partner)
                                      : std::string("meets no call of the other rank")));
    };
    if (odd_a) explain(p, *odd_a);
    if (odd_b) explain(q, *odd_b);
    if (odd_a && odd_b) {
      const bool a_send = IsSend(run.call({p, *odd_a})), b_send = IsSend(run.call({q, *odd_b}));
      if (a_send == b_send) {
        lines.push_back(
            fmt::format("each rank {} the other before it {}, in separate groups: under NCCL's "
                        "rendezvous both wait for a call the other "
                        "makes only later. Put the send and the receive into one group "
                        "(batch_isend_irecv), or let one rank {} first",
                        a_send ? "sends to" : "receives from", a_send ? "receives" : "sends",
                        a_send ? "receive" : "send"));
      }
    }
    return lines;
  }
  return {};
}

// A cycle in the graph of which rank waits for which, shortest first; empty if none.
std::vector<int> FindCycle(const std::map<int, std::vector<int>>& waits_on) {
  std::vector<int> best;
  for (const auto& [start, _] : waits_on) {
    // Breadth-first from start back to start.
    std::map<int, int> parent;
    std::vector<int> frontier{start};
    bool found = false;
    while (!frontier.empty() && !found) {
      std::vector<int> next;
      for (int v : frontier) {
        auto it = waits_on.find(v);
        if (it == waits_on.end()) continue;
        for (int w : it->second) {
          if (w == start) {
            std::vector<int> cycle{v};
            for (int x = v; x != start; x = parent[x]) cycle.push_back(parent[x]);
            std::reverse(cycle.begin(), cycle.end());
            if (best.empty() || cycle.size() < best.size()) best = cycle;
            found = true;
            break;
          }
          if (!parent.count(w)) {
            parent[w] = v;
            next.push_back(w);
          }
        }
        if (found) break;
      }
      frontier = std::move(next);
    }
  }
  return best;
}

std::optional<HangReport> FindHang(const RunIndex& run) {
  std::map<int, int64_t> blocked;
  for (const Trace& t : run.traces()) {
    if (const int64_t u = run.BlockedUnit(t.rank()); u >= 0) blocked[t.rank()] = u;
  }
  if (blocked.empty()) return std::nullopt;
  HangReport h;
  std::map<int, std::vector<Wait>> waits;
  std::map<int, std::vector<int>> waits_on;
  for (const Trace& t : run.traces()) {
    const int r = t.rank();
    auto it = blocked.find(r);
    if (it == blocked.end()) {
      h.ranks.push_back(t.calls.empty()
                            ? fmt::format("rank {}: made no point-to-point call", r)
                            : fmt::format("rank {}: all {} calls completed; the last, #{}, at {}",
                                          r, t.calls.size(), t.calls.size() - 1,
                                          Seconds(t.calls.back().t_call)));
      continue;
    }
    const auto& unit = run.units(r)[it->second];
    const TraceCall& first = t.calls[unit.front()];
    h.ranks.push_back(fmt::format(
        "rank {}: blocked in {} (calls #{}..#{}, made at {}){}", r, UnitName(first), unit.front(),
        unit.back(), Seconds(first.t_call),
        t.ended_on_signal() ? fmt::format(" when signal {} ended it", t.header.end_signal) : ""));
    waits[r] = WaitsOf(run, r, it->second);
    for (const Wait& w : waits[r]) {
      h.ranks.push_back(fmt::format("    waits in {}: {}", Describe(run, w.call), w.why));
      if (w.on >= 0) waits_on[r].push_back(w.on);
    }
  }
  const std::vector<int> cycle = FindCycle(waits_on);
  if (!cycle.empty()) {
    for (size_t k = 0; k < cycle.size(); ++k) {
      const int p = cycle[k], q = cycle[(k + 1) % cycle.size()];
      for (const Wait& w : waits[p]) {
        if (w.on == q) {
          h.cycle.push_back({p, w.call, q, w.why});
          break;
        }
      }
    }
    std::vector<std::string> names;
    for (int r : cycle) names.push_back(std::to_string(r));
    h.headline =
        cycle.size() == 2
            ? fmt::format("ranks {} and {} wait for each other: a cross", cycle[0], cycle[1])
            : fmt::format("ranks {} wait for each other in a cycle", fmt::join(names, " -> "));
    for (size_t k = 0; k < cycle.size(); ++k) {
      const int p = cycle[k], q = cycle[(k + 1) % cycle.size()];
      if (cycle.size() == 2 && k == 1) break;  // one pair, told once
      for (std::string& line : Divergence(run, p, q)) h.explanation.push_back(std::move(line));
    }
    return h;
  }
  // No cycle: the waits end at ranks that will never answer. Follow each blocked rank's first
  // wait on another rank to where it ends, and name what holds up the ranks there.
  std::map<int, int> next;
  for (const auto& [r, ws] : waits) {
    for (const Wait& w : ws) {
      if (w.on >= 0) {
        next[r] = w.on;
        break;
      }
    }
  }
  std::map<int, std::vector<std::string>> chains;  // root rank -> the chains that end there
  for (const auto& [r, ws] : waits) {
    std::vector<int> chain{r};
    std::set<int> seen{r};
    for (auto it = next.find(r); it != next.end() && seen.insert(it->second).second;
         it = next.find(it->second)) {
      chain.push_back(it->second);
    }
    if (chain.size() > 1)
      chains[chain.back()].push_back(fmt::format("{}", fmt::join(chain, " -> ")));
  }
  std::vector<int> roots;
  for (const auto& [r, ws] : waits) {
    if (!next.count(r)) roots.push_back(r);
  }
  for (int root : roots) {
    for (const Wait& w : waits[root]) {
      if (w.on < 0) h.explanation.push_back(fmt::format("{}: {}", Describe(run, w.call), w.why));
    }
    if (chains.count(root)) {
      h.explanation.push_back(
          fmt::format("  waiting on rank {}: ranks {}", root, fmt::join(chains[root], "; ranks ")));
    }
  }
  const std::string first = roots.empty() ? "" : waits[roots.front()].front().why;
  h.headline =
      roots.size() == 1
          ? fmt::format("{} rank{} never complete{}; the waits end at rank {} call #{}: {}",
                        blocked.size(), blocked.size() == 1 ? "" : "s",
                        blocked.size() == 1 ? "s" : "", roots.front(),
                        waits[roots.front()].front().call.index, first)
          : fmt::format("{} ranks never complete; the waits end at ranks {}", blocked.size(),
                        fmt::join(roots, ", "));
  return h;
}

void AddNotes(const RunIndex& run, std::vector<std::string>& notes) {
  bool host_completion = false;
  for (const Trace& t : run.traces()) {
    if (t.ended_on_signal())
      notes.push_back(fmt::format("rank {}'s trace was written when signal {} ended its process",
                                  t.rank(), t.header.end_signal));
    if (t.header.dropped_calls)
      notes.push_back(fmt::format("rank {} made {} calls more than its trace holds", t.rank(),
                                  t.header.dropped_calls));
    host_completion |= !(t.header.flags & kTraceGpuCompletion) && !t.calls.empty();
  }
  if (host_completion) {
    notes.push_back(
        "completion times are when calls returned to the host (no CUDA events): with a real GPU a "
        "call that NCCL queued "
        "counts as completed, so a hang on the GPU shows only in the schedule check (--deadlock)");
  }
}

}  // namespace

std::string DescribeCall(const std::vector<Trace>& traces, const CallRef& call) {
  const RunIndex run(traces);
  return Describe(run, call);
}

TraceCheckReport CheckTraces(const std::vector<Trace>& traces) {
  RunIndex run(traces);
  TraceCheckReport report;
  std::set<uint64_t> comms;
  for (const Trace& t : traces) {
    TraceCheckReport::RankSummary s;
    s.rank = t.rank();
    s.pid = t.header.pid;
    s.host = t.host();
    s.path = t.path;
    s.calls = static_cast<int64_t>(t.calls.size());
    s.units = static_cast<int64_t>(run.units(t.rank()).size());
    s.pending = std::count_if(t.calls.begin(), t.calls.end(),
                              [](const TraceCall& c) { return !Completed(c); });
    s.end_signal = t.header.end_signal;
    s.gpu_completion = t.header.flags & kTraceGpuCompletion;
    report.ranks.push_back(s);
    report.calls += s.calls;
    for (const TraceComm& c : t.comms) comms.insert(c.id);
  }
  report.communicators = static_cast<int64_t>(comms.size());
  int64_t left_open = 0;
  for (const RunIndex::Channel& ch : run.channels())
    CheckChannel(run, ch, report.matched, left_open);
  if (left_open) {
    run.notes().push_back(fmt::format(
        "{} call{} left without a partner because the other rank stopped before it (the hang "
        "explains them)",
        left_open, left_open == 1 ? " is" : "s are"));
  }
  CheckErrors(run);
  report.problems = std::move(run.problems());
  report.hang = FindHang(run);
  report.notes = std::move(run.notes());
  AddNotes(run, report.notes);
  return report;
}

std::string TraceCheckReport::Text() const {
  std::string out = fmt::format("{} rank{}, {} communicator{}, {} calls, {} send/receive pairs\n",
                                ranks.size(), ranks.size() == 1 ? "" : "s", communicators,
                                communicators == 1 ? "" : "s", calls, matched);
  for (const RankSummary& r : ranks) {
    out += fmt::format("  rank {}: {} calls in {} units{}  ({}, pid {} on {})\n", r.rank, r.calls,
                       r.units, r.pending ? fmt::format(", {} never completed", r.pending) : "",
                       r.path, r.pid, r.host);
  }
  if (problems.empty()) {
    out += "matching: every send meets a receive of the same count and type\n";
  } else {
    out +=
        fmt::format("matching: {} problem{}\n", problems.size(), problems.size() == 1 ? "" : "s");
    for (const TraceProblem& p : problems) {
      out += fmt::format("  {}: {}\n", TraceProblemKindName(p.kind), p.message);
      for (const std::string& d : p.details) out += "    " + d + "\n";
    }
  }
  if (hang) {
    out += "hang: " + hang->headline + "\n";
    for (const std::string& line : hang->ranks) out += "  " + line + "\n";
    if (!hang->cycle.empty()) {
      out += "  the cycle:\n";
      for (const HangStep& s : hang->cycle) {
        out += fmt::format("    rank {} call #{} waits for rank {}: {}\n", s.rank, s.call.index,
                           s.waits_for_rank, s.why);
      }
    }
    for (const std::string& line : hang->explanation) out += "  " + line + "\n";
  } else {
    out += "hang: none (every call completed)\n";
  }
  for (const std::string& n : notes) out += "note: " + n + "\n";
  return out;
}

std::string TraceCheckReport::Json() const {
  using nlohmann::json;
  json j;
  j["ok"] = ok();
  j["ranks"] = json::array();
  for (const RankSummary& r : ranks) {
    j["ranks"].push_back({{"rank", r.rank},
                          {"pid", r.pid},
                          {"host", r.host},
                          {"path", r.path},
                          {"calls", r.calls},
                          {"units", r.units},
                          {"pending", r.pending},
                          {"end_signal", r.end_signal},
                          {"gpu_completion", r.gpu_completion}});
  }
  j["communicators"] = communicators;
  j["calls"] = calls;
  j["matched"] = matched;
  auto ref = [](const CallRef& c) {
    return c.valid() ? json{{"rank", c.rank}, {"call", c.index}} : json(nullptr);
  };
  j["problems"] = json::array();
  for (const TraceProblem& p : problems) {
    j["problems"].push_back({{"kind", TraceProblemKindName(p.kind)},
                             {"message", p.message},
                             {"details", p.details},
                             {"call", ref(p.call)},
                             {"partner", ref(p.partner)}});
  }
  if (hang) {
    json cycle = json::array();
    for (const HangStep& s : hang->cycle) {
      cycle.push_back({{"rank", s.rank},
                       {"call", s.call.index},
                       {"waits_for", s.waits_for_rank},
                       {"why", s.why}});
    }
    j["hang"] = {{"headline", hang->headline},
                 {"ranks", hang->ranks},
                 {"cycle", cycle},
                 {"explanation", hang->explanation}};
  } else {
    j["hang"] = nullptr;
  }
  j["notes"] = notes;
  return j.dump(2) + "\n";
}

// ---- traces as a schedule

TraceSchedule ScheduleFromTraces(const std::vector<Trace>& traces) {
  const RunIndex run(traces);
  TraceSchedule out;
  int R = 0;
  for (const Trace& t : traces) R = std::max(R, t.rank() + 1);
  if (R < 2)
    throw InputError("the traces hold fewer than two ranks: there is no communication to schedule");
  // Microbatch ids: one per message, in the order the sender made its sends (then the
  // receives left without a send, in the order the receiver made them).
  std::map<std::pair<int, int64_t>, int> message_of;  // (rank, call) -> microbatch
  std::vector<std::pair<int, int>> route_of;          // microbatch -> (sender, receiver)
  std::set<std::pair<uint64_t, std::pair<int, int>>> pairs_seen;
  std::set<std::pair<int, int>> merged_pairs;
  int self_sends = 0;
  for (const RunIndex::Channel& ch : run.channels()) {
    if (ch.from == ch.to) {
      self_sends += static_cast<int>(ch.sends.size() + ch.recvs.size());
      continue;
    }
    for (const auto& [id, pair] : pairs_seen) {
      if (pair == std::pair{ch.from, ch.to} && id != ch.comm) merged_pairs.insert(pair);
    }
    pairs_seen.insert({ch.comm, {ch.from, ch.to}});
    const size_t n = std::max(ch.sends.size(), ch.recvs.size());
    for (size_t k = 0; k < n; ++k) {
      const int m = static_cast<int>(route_of.size());
      route_of.push_back({ch.from, ch.to});
      if (k < ch.sends.size()) message_of[{ch.from, ch.sends[k]}] = m;
      if (k < ch.recvs.size()) message_of[{ch.to, ch.recvs[k]}] = m;
    }
  }
  const int64_t M = static_cast<int64_t>(route_of.size());
  if (M == 0) throw InputError("the traces hold no message between two ranks to schedule");
  if (int64_t{R} * M > kMaxStageMicrobatches) {
    throw InputError(
        fmt::format("{} messages over {} ranks are more than the schedule model holds (ranks x "
                    "messages <= {}): check a shorter run",
                    M, R, kMaxStageMicrobatches));
  }
  Schedule& s = out.schedule;
  s.ranks = R;
  s.stages = R;
  s.forward_only = true;  // a message carries nothing back
  s.microbatches = static_cast<int>(M);
  s.placement.resize(R);
  s.params.resize(R);
  for (int r = 0; r < R; ++r) s.placement[r] = s.params[r] = r;
  for (const auto& [from, to] : route_of) s.routes.push_back({from, to});
  s.program.resize(R);
  out.origin.resize(R);
  auto emit = [&](int rank, Action a, CallRef origin = {}) {
    s.program[rank].push_back(a);
    out.origin[rank].push_back(origin);
  };
  std::vector<bool> received(M, false);
  for (const Trace& t : traces) {
    const int r = t.rank();
    for (const auto& unit : run.units(r)) {
      std::vector<std::pair<int64_t, int>> ops;  // (call, microbatch)
      for (int64_t i : unit) {
        if (auto it = message_of.find({r, i}); it != message_of.end())
          ops.push_back({i, it->second});
      }
      if (ops.empty()) continue;
      for (const auto& [i, m] : ops) {
        if (IsSend(t.calls[i])) emit(r, Action::Compute(Op::kForward, r, m));
      }
      for (const auto& [i, m] : ops) {
        emit(r, Action::Comm(IsSend(t.calls[i]) ? Op::kSendF : Op::kRecvF, r, m), {r, i});
      }
      emit(r, Action::Wait(), {r, ops.front().first});
      for (const auto& [i, m] : ops) {
        if (!IsSend(t.calls[i])) {
          emit(r, Action::Compute(Op::kForward, r, m));
          received[m] = true;
        }
      }
    }
  }
  // The sender's computes of receives that no send meets, and the receiver's of messages it
  // never received.
  std::vector<bool> sent(M, false);
  for (const auto& [call, m] : message_of)
    sent[m] = sent[m] || IsSend(run.call({call.first, call.second}));
  for (int m = 0; m < M; ++m) {
    if (sent[m]) continue;
    const int from = route_of[m].first;
    emit(from, Action::Compute(Op::kForward, from, m));
  }
  for (int m = 0; m < M; ++m) {
    if (received[m]) continue;
    const int to = route_of[m].second;
    emit(to, Action::Compute(Op::kForward, to, m));
  }
  if (int64_t{0} + s.ActionCount() > kMaxActions) {
    throw InputError(
        fmt::format("the traces make {} actions, more than the schedule model holds ({})",
                    s.ActionCount(), kMaxActions));
  }
  for (const auto& [from, to] : merged_pairs) {
    out.notes.push_back(
        fmt::format("several communicators carry messages from rank {} to rank {}: the schedule "
                    "merges them into one "
                    "ordered channel, as if they were one communicator",
                    from, to));
  }
  if (self_sends)
    out.notes.push_back(fmt::format("{} calls a rank made to itself are left out", self_sends));
  return out;
}

TraceDeadlockVerdict CheckTraceDeadlock(const std::vector<Trace>& traces, const TraceSchedule& ts,
                                        bool use_z3) {
  VerifyOptions options;
  options.model = CommModel::kNccl;
  options.use_z3 = use_z3;
  const VerifyReport report = Verify(ts.schedule, options);
  const CheckResult* check = report.Find("deadlock");
  TraceDeadlockVerdict v;
  v.ok = check && check->ok();
  v.text = fmt::format(
      "deadlock (the calls as a schedule under the nccl model: rendezvous sends, one in-order "
      "stream per rank): {}\n",
      v.ok ? "none: this call order completes under every timing" : "this call order can deadlock");
  if (check) v.text += "  verifier: " + check->message + "\n";
  nlohmann::json cycle = nlohmann::json::array();
  for (size_t k = 0; k < report.cycle.size(); ++k) {
    const CycleStep& step = report.cycle[k];
    const CycleStep& next = report.cycle[(k + 1) % report.cycle.size()];
    const CallRef call = ts.origin[step.rank][step.index];
    const CallRef waits_for = ts.origin[next.rank][next.index];
    const std::string what =
        call.valid() ? DescribeCall(traces, call)
                     : fmt::format("rank {} action {} ({})", step.rank, step.index, step.action);
    const std::string whom = waits_for.valid()
                                 ? DescribeCall(traces, waits_for)
                                 : fmt::format("rank {} action {}", next.rank, next.index);
    if (report.cycle.size() == 1) {
      // The verifier's reason already says "never completes: ..." where it is that.
      v.text += fmt::format("  {}\n    {}{}\n", what,
                            step.waits_for.starts_with("never completes") ? "" : "never completes: ",
                            step.waits_for);
    } else {
      v.text += fmt::format("  {}{}\n    waits for {}\n", what,
                            step.action == "WAIT" ? " and the rest of its group" : "", whom);
    }
    cycle.push_back({{"rank", step.rank},
                     {"call", call.valid() ? nlohmann::json(call.index) : nlohmann::json(nullptr)},
                     {"action", step.action},
                     {"waits_for", step.waits_for}});
  }
  for (const std::string& n : ts.notes) v.text += "  note: " + n + "\n";
  v.json = nlohmann::json{{"ok", v.ok},
                          {"message", check ? check->message : ""},
                          {"cycle", cycle},
                          {"notes", ts.notes}}
               .dump();
  return v;
}

std::string FormatTrace(const Trace& t) {
  std::string out = fmt::format(
      "{}: rank {}, pid {} on {}, {} communicators, {} calls{}\n", t.path, t.rank(), t.header.pid,
      t.host(), t.comms.size(), t.calls.size(),
      t.ended_on_signal()
          ? fmt::format(", written when signal {} ended the process", t.header.end_signal)
          : "");
  for (size_t i = 0; i < t.comms.size(); ++i) {
    const TraceComm& c = t.comms[i];
    out += fmt::format("  communicator #{}: id {:#018x}, rank {} of {}, {}{}{}\n", i, c.id, c.rank,
                       c.nranks, CommOriginName(static_cast<CommOrigin>(c.origin)),
                       c.parent_id ? fmt::format(" of {:#018x}", c.parent_id) : "",
                       c.flags & kCommDestroyed ? ", destroyed"
                       : c.flags & kCommAborted ? ", aborted"
                                                : "");
  }
  for (size_t i = 0; i < t.calls.size(); ++i) {
    const TraceCall& c = t.calls[i];
    const bool send = c.kind == static_cast<uint8_t>(CallKind::kSend);
    std::string state = c.flags & kCallStopped ? "stopped dead before it"
                        : c.flags & kCallCompleted
                            ? fmt::format("completed at {:.6f} s", c.t_complete / 1e9)
                        : c.flags & kCallPosted ? "posted, never completed"
                                                : "never posted";
    if (c.flags & kCallError) state += fmt::format(", NCCL error {}", c.result);
    out += fmt::format(
        "  #{} {:.6f} s {} #{}.{}{}: {} {} x {} {} rank {} (comm #{}, stream {:#x}){}: {}\n", i,
        c.t_call / 1e9, c.flags & kCallInGroup ? "group" : "unit", c.unit, c.index_in_unit,
        c.flags & kCallShuffled ? fmt::format(" posted as #{}", c.posted_as) : "",
        send ? "send" : "recv", c.count, NcclDataTypeName(c.dtype), send ? "to" : "from", c.peer,
        c.comm, c.stream,
        c.delay_us ? fmt::format(", delayed {} us{}", c.delay_us,
                                 c.flags & kCallGpuDelay ? " on the GPU" : "")
                   : "",
        state);
  }
  return out;
}

}  // namespace pipeproof
