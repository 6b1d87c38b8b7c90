#include "exec/fault_draw.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <numeric>
#include <random>

namespace pipeproof {
namespace {

double ParseNumber(std::string_view text, std::string_view what) {
  double v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || !std::isfinite(v)) {
    throw InputError(fmt::format("{}: '{}' is not a number", what, text));
  }
  return v;
}

// "100us", "1.5ms", "0.2s", "250" (microseconds).
double ParseMicroseconds(std::string_view text) {
  double scale = 1;
  for (auto [suffix, factor] : {std::pair{"ns", 1e-3}, {"us", 1.0}, {"ms", 1e3}, {"s", 1e6}}) {
    std::string_view s(suffix);
    if (text.size() > s.size() && text.substr(text.size() - s.size()) == s) {
      text.remove_suffix(s.size());
      scale = factor;
      break;
    }
  }
  const double v = ParseNumber(text, "--delay mean") * scale;
  if (v < 0 || v > 60e6) throw InputError(fmt::format("--delay mean must lie in 0..60s (got {}us)", v));
  return v;
}

}  // namespace

DelaySpec DelaySpec::Parse(std::string_view text) {
  DelaySpec spec;
  std::string_view kind = text.substr(0, text.find(':'));
  if (kind == "uniform") {
    spec.distribution = DelayDistribution::kUniform;
  } else if (kind == "exponential" || kind == "exp") {
    spec.distribution = DelayDistribution::kExponential;
  } else if (kind == "heavy" || kind == "heavy-tailed" || kind == "pareto") {
    spec.distribution = DelayDistribution::kHeavyTailed;
  } else {
    throw InputError(fmt::format("--delay '{}': the distribution must be uniform, exponential (exp) "
                                 "or heavy (pareto), as in exp:100us", text));
  }
  if (kind.size() < text.size()) spec.mean_us = ParseMicroseconds(text.substr(kind.size() + 1));
  return spec;
}

void DelaySpec::ParseWhere(std::string_view text) {
  at_post = at_deliver = at_compute = false;
  while (!text.empty()) {
    std::string_view item = text.substr(0, text.find(','));
    text.remove_prefix(std::min(text.size(), item.size() + 1));
    if (item == "post") {
      at_post = true;
    } else if (item == "deliver") {
      at_deliver = true;
    } else if (item == "compute") {
      at_compute = true;
    } else {
      throw InputError(fmt::format("--delay-at: '{}' is not one of post, deliver, compute", item));
    }
  }
}

std::string DelaySpec::ToString() const {
  const char* name = distribution == DelayDistribution::kUniform       ? "uniform"
                     : distribution == DelayDistribution::kExponential ? "exponential"
                                                                       : "heavy";
  std::vector<std::string> where;
  if (at_post) where.push_back("post");
  if (at_deliver) where.push_back("deliver");
  if (at_compute) where.push_back("compute");
  return fmt::format("{}:{:g}us at {}", name, mean_us, fmt::join(where, ","));
}

Straggler Straggler::Parse(std::string_view text) {
  const size_t colon = text.find(':');
  if (colon == std::string_view::npos) {
    throw InputError(fmt::format("--straggler '{}': expected RANK:FACTOR, as in 2:3", text));
  }
  Straggler s;
  const double rank = ParseNumber(text.substr(0, colon), "--straggler rank");
  if (rank < 0 || rank != std::floor(rank) || rank >= kMaxRanks) {
    throw InputError(fmt::format("--straggler '{}': the rank must be a whole number", text));
  }
  s.rank = static_cast<int>(rank);
  s.factor = ParseNumber(text.substr(colon + 1), "--straggler factor");
  if (s.factor < 1 || s.factor > 1000) {
    throw InputError(fmt::format("--straggler '{}': the slowdown factor must lie in 1..1000", text));
  }
  return s;
}

namespace {

// A generator per kind of fault, all from the one seed.
std::mt19937_64 Stream(uint64_t seed, uint64_t kind) {
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(kind)};
  return std::mt19937_64(seq);
}

// Uniform on (0, 1), from the top 53 bits.
double Unit(std::mt19937_64& rng) { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53; }

uint32_t DrawDelay(const DelaySpec& spec, std::mt19937_64& rng) {
  const double u = Unit(rng);
  double us = 0;
  switch (spec.distribution) {
    case DelayDistribution::kUniform: us = 2 * spec.mean_us * u; break;
    case DelayDistribution::kExponential: us = -spec.mean_us * std::log(u); break;
    case DelayDistribution::kHeavyTailed: {
      constexpr double kShape = 1.5;
      const double scale = spec.mean_us * (kShape - 1) / kShape;
      us = std::min(scale / std::pow(u, 1 / kShape), 100 * spec.mean_us);
      break;
    }
  }
  return static_cast<uint32_t>(std::llround(us));
}

int64_t Below(std::mt19937_64& rng, int64_t n) {
  return std::uniform_int_distribution<int64_t>(0, n - 1)(rng);
}

// A posting order for a unit that keeps each (direction, peer)'s ops in program order: random
// keys, sorted within each channel so the channel's ops keep their relative order.
std::vector<int> ChannelPreservingShuffle(const RankPlan& rank, const PlannedUnit& unit, std::mt19937_64& rng) {
  const int n = static_cast<int>(unit.comms.size());
  std::vector<uint64_t> key(n);
  for (auto& k : key) k = rng();
  std::map<std::pair<bool, int>, std::vector<int>> channels;
  for (int i = 0; i < n; ++i) {
    const PlannedComm& c = rank.comms[unit.comms[i]];
    channels[{c.send, c.peer}].push_back(i);
  }
  for (auto& [channel, ops] : channels) {
    std::vector<uint64_t> keys;
    for (int i : ops) keys.push_back(key[i]);
    std::sort(keys.begin(), keys.end());
    for (size_t k = 0; k < ops.size(); ++k) key[ops[k]] = keys[k];
  }
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return key[a] < key[b]; });
  return order;
}

// Every training-pass message, and the pairs of them a sender posts in one unit to one receiver.
struct Messages {
  std::vector<MessageId> all;
  std::vector<MessageId> swappable;  // the first of two consecutive messages in one unit
};

Messages TrainMessages(const RunPlan& run) {
  Messages m;
  const PassPlan& train = run.passes.front();
  for (const RankPlan& rank : train.ranks) {
    for (const PlannedUnit& unit : rank.units) {
      std::map<int, std::vector<int64_t>> to_peer;
      for (int c : unit.comms) {
        const PlannedComm& comm = rank.comms[c];
        if (!comm.send) continue;
        m.all.push_back({rank.rank, comm.peer, comm.channel_seq});
        to_peer[comm.peer].push_back(comm.channel_seq);
      }
      for (const auto& [peer, seqs] : to_peer) {
        for (size_t k = 0; k + 1 < seqs.size(); ++k) m.swappable.push_back({rank.rank, peer, seqs[k]});
      }
    }
  }
  return m;
}

enum StreamKind : uint64_t { kPostStream = 1, kDeliverStream, kComputeStream, kShuffleStream, kCorruptStream, kKillStream };

}  // namespace

PlanTarget TargetOf(const RunPlan& run, const std::string& schedule_name) {
  PlanTarget t;
  t.schedule = schedule_name;
  for (int r = 0; r < run.ranks; ++r) {
    t.comms.push_back(run.Comms(r));
    t.computes.push_back(run.Computes(r));
    t.units.push_back(run.Units(r));
  }
  return t;
}

FaultPlan DrawFaultPlan(const RunPlan& run, const FaultOptions& o, const MessageFormat& format,
                        const std::string& schedule_name) {
  FaultPlan plan;
  plan.seed = o.seed;
  plan.poison = o.poison;
  plan.target = TargetOf(run, schedule_name);
  plan.ranks.resize(run.ranks);
  std::vector<std::string> how;

  if (o.delay) {
    how.push_back("delay " + o.delay->ToString());
    std::mt19937_64 post = Stream(o.seed, kPostStream), deliver = Stream(o.seed, kDeliverStream),
                    compute = Stream(o.seed, kComputeStream);
    for (int r = 0; r < run.ranks; ++r) {
      RankFaults& f = plan.ranks[r];
      for (const PassPlan& pass : run.passes) {
        for (const PlannedComm& c : pass.ranks[r].comms) {
          if (o.delay->at_post) f.post_delay_us.push_back(DrawDelay(*o.delay, post));
          if (o.delay->at_deliver) f.deliver_delay_us.push_back(c.send ? 0 : DrawDelay(*o.delay, deliver));
        }
        if (o.delay->at_compute) {
          for (int k = 0; k < pass.ranks[r].computes; ++k) f.compute_delay_us.push_back(DrawDelay(*o.delay, compute));
        }
      }
    }
  }
  for (const Straggler& s : o.stragglers) {
    if (s.rank >= run.ranks) {
      throw InputError(fmt::format("--straggler names rank {}, but the schedule has ranks 0..{}", s.rank, run.ranks - 1));
    }
    plan.ranks[s.rank].straggler = s.factor;
    how.push_back(fmt::format("straggler {}:{:g}", s.rank, s.factor));
  }
  if (o.shuffle) {
    how.push_back("shuffle");
    std::mt19937_64 rng = Stream(o.seed, kShuffleStream);
    for (int r = 0; r < run.ranks; ++r) {
      for (const PassPlan& pass : run.passes) {
        const RankPlan& rank = pass.ranks[r];
        for (size_t u = 0; u < rank.units.size(); ++u) {
          if (rank.units[u].comms.size() < 2) continue;
          std::vector<int> order = ChannelPreservingShuffle(rank, rank.units[u], rng);
          if (!std::is_sorted(order.begin(), order.end())) {
            plan.ranks[r].unit_orders.push_back({pass.base[r].unit + static_cast<int64_t>(u), std::move(order)});
          }
        }
      }
    }
  }
  if (o.poison) how.push_back("poison");
  if (o.corrupt) {
    std::mt19937_64 rng = Stream(o.seed, kCorruptStream);
    const Messages messages = TrainMessages(run);
    const std::vector<MessageId>& pool = *o.corrupt == CorruptKind::kSwap ? messages.swappable : messages.all;
    if (pool.empty()) {
      throw InputError(*o.corrupt == CorruptKind::kSwap
                           ? "--corrupt swap needs a unit that sends two messages to the same rank (a "
                             "WAIT group such as DualPipe's); this schedule has none"
                           : "--corrupt needs a message to corrupt; this schedule sends none");
    }
    Corruption c;
    c.kind = *o.corrupt;
    c.message = pool[Below(rng, static_cast<int64_t>(pool.size()))];
    if (c.kind == CorruptKind::kBitflip) {
      c.element = Below(rng, format.elements);
      c.bit = format.mantissa_bits - static_cast<int>(Below(rng, std::min(4, format.mantissa_bits + 1)));
    }
    plan.corrupt = c;
    how.push_back(fmt::format("corrupt {}", CorruptKindName(c.kind)));
  }
  if (o.kill_rank) {
    if (*o.kill_rank < 0 || *o.kill_rank >= run.ranks) {
      throw InputError(fmt::format("--kill-rank {}: the schedule has ranks 0..{}", *o.kill_rank, run.ranks - 1));
    }
    const int64_t actions = static_cast<int64_t>(run.passes.front().schedule.program[*o.kill_rank].size());
    if (actions == 0) throw InputError(fmt::format("--kill-rank {}: that rank has nothing to do", *o.kill_rank));
    std::mt19937_64 rng = Stream(o.seed, kKillStream);
    plan.kill = Kill{*o.kill_rank, Below(rng, actions)};
    how.push_back(fmt::format("kill rank {}", *o.kill_rank));
  }
  plan.drawn_with = fmt::format("seed {}: {}", o.seed, how.empty() ? "no faults" : fmt::format("{}", fmt::join(how, "; ")));
  return plan;
}

void CheckPlanFits(const FaultPlan& plan, const RunPlan& run) {
  if (plan.target) {
    const PlanTarget here = TargetOf(run, plan.target->schedule);
    if (here != *plan.target) {
      throw InputError(fmt::format(
          "the fault plan was drawn for another run ({}); its per-rank counts of communication "
          "ops, computes and units differ from this schedule's. Replay it with the same schedule "
          "and options", plan.target->schedule));
    }
  }
  if (static_cast<int>(plan.ranks.size()) > run.ranks) {
    throw InputError(fmt::format("the fault plan has faults for {} ranks; the schedule has {}", plan.ranks.size(), run.ranks));
  }
  for (int r = 0; r < static_cast<int>(plan.ranks.size()); ++r) {
    // A delay array holds one entry per site of the run from the first on (a hand-written plan
    // may stop early: the sites after it have no delay). More entries than sites were written
    // for another run.
    const RankFaults& f = plan.ranks[r];
    const auto fits = [&](std::string_view name, size_t entries, int64_t sites) {
      if (static_cast<int64_t>(entries) <= sites) return;
      throw InputError(fmt::format(
          "fault plan: ranks[{}].{} has {} entries; this run has {} (one per {}): it was written "
          "for another run",
          r, name, entries, sites, name == "compute_delay_us" ? "compute" : "communication op"));
    };
    fits("post_delay_us", f.post_delay_us.size(), run.Comms(r));
    fits("deliver_delay_us", f.deliver_delay_us.size(), run.Comms(r));
    fits("compute_delay_us", f.compute_delay_us.size(), run.Computes(r));
    for (const auto& u : plan.ranks[r].unit_orders) {
      if (u.unit < 0 || u.unit >= run.Units(r)) {
        throw InputError(fmt::format(
            "fault plan: ranks[{}].unit_orders names unit {}; rank {} has units 0..{} in this run",
            r, u.unit, r, run.Units(r) - 1));
      }
      // Find the unit by its run-wide counter and check that each channel keeps its order.
      for (const PassPlan& pass : run.passes) {
        const int64_t local = u.unit - pass.base[r].unit;
        const RankPlan& rank = pass.ranks[r];
        if (local < 0 || local >= static_cast<int64_t>(rank.units.size())) continue;
        const PlannedUnit& unit = rank.units[local];
        if (u.order.size() != unit.comms.size()) {
          throw InputError(fmt::format("fault plan: rank {} unit {} has {} ops, the plan orders {}", r, u.unit, unit.comms.size(), u.order.size()));
        }
        std::map<std::pair<bool, int>, int> last;
        for (int k : u.order) {
          const PlannedComm& c = rank.comms[unit.comms[k]];
          auto [it, fresh] = last.emplace(std::pair{c.send, c.peer}, k);
          if (!fresh && it->second > k) {
            throw InputError(fmt::format(
                "fault plan: rank {} unit {} posts two messages {} rank {} out of order; that changes "
                "which message meets which (the swap negative control), not a legal shuffle",
                r, u.unit, c.send ? "to" : "from", c.peer));
          }
          it->second = k;
        }
      }
    }
  }
  if (plan.kill && plan.kill->rank >= run.ranks) {
    throw InputError(fmt::format("fault plan: kill names rank {}; the schedule has {} ranks", plan.kill->rank, run.ranks));
  }
  if (plan.corrupt) {
    const MessageId& m = plan.corrupt->message;
    if (m.from >= run.ranks || m.to >= run.ranks || m.from == m.to) {
      throw InputError(fmt::format("fault plan: corrupt names a message from rank {} to rank {}, which this schedule cannot have", m.from, m.to));
    }
    if (plan.corrupt->kind == CorruptKind::kSwap) {
      const Messages messages = TrainMessages(run);
      if (std::find(messages.swappable.begin(), messages.swappable.end(), m) == messages.swappable.end()) {
        throw InputError(fmt::format("fault plan: swap of messages #{} and #{} from rank {} to rank {}: "
                                     "the sender does not post them in one unit", m.seq, m.seq + 1, m.from, m.to));
      }
    }
  }
}

MessageFormat MessageFormatOf(const ModelConfig& model) {
  const int mantissa = model.dtype == DType::kF64 ? 52 : model.dtype == DType::kF32 ? 23 : 7;
  return {int64_t{model.shape.Rows()} * model.shape.hidden, mantissa};
}

}  // namespace pipeproof
