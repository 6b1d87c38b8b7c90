#include "exec/run_plan.h"

#include <fmt/format.h>

#include <map>
#include <set>
#include <stdexcept>

namespace pipeproof {

std::string_view PassName(PassKind kind) { return kind == PassKind::kTrain ? "train" : "inference"; }

Schedule ForwardOnly(const Schedule& schedule) {
  Schedule out = schedule;
  for (auto& actions : out.program) {
    std::vector<Action> kept;
    bool group_open = false;  // a SEND/RECV kept since the last kept WAIT
    for (const Action& a : actions) {
      switch (a.op) {
        case Op::kForward:
        case Op::kSendF:
        case Op::kRecvF:
        case Op::kWaitSendF:
          kept.push_back(a);
          group_open |= IsComm(a.op);
          break;
        case Op::kOverlapFB:
          kept.push_back(Action::Compute(Op::kForward, a.stage, a.microbatch));
          break;
        case Op::kWait:
          if (group_open) kept.push_back(a);
          group_open = false;
          break;
        default:
          break;  // B, I, W, SEND_B, RECV_B, WAIT_SEND_B, the data-parallel actions
      }
    }
    actions = std::move(kept);
  }
  return out;
}

RankPlan PlanRank(const Schedule& schedule, const RouteIndex& routes, int rank,
                  StreamLayout streams) {
  const std::vector<Action>& program = schedule.program[rank];
  RankPlan plan;
  plan.rank = rank;
  const int n = static_cast<int>(program.size());
  plan.comm_of_action.assign(n, -1);
  plan.unit_of_action.assign(n, -1);
  plan.compute_of_action.assign(n, -1);
  plan.waited_unit_of_action.assign(n, -1);
  for (const Action& a : program) plan.grouped |= a.op == Op::kWait;

  std::vector<int64_t> sent(schedule.ranks, 0), received(schedule.ranks, 0);
  std::map<int, int> stream_units;  // stream -> lone units so far
  std::vector<int> open_group;
  for (int i = 0; i < n; ++i) {
    const Action& a = program[i];
    if (IsCompute(a.op)) {
      plan.compute_of_action[i] = plan.computes++;
    } else if (IsComm(a.op)) {
      std::optional<Message> message = MessageOf(schedule, routes, a.TaskAt(0));
      if (!message) {
        throw std::logic_error(fmt::format("rank {} action {} {} has no neighbour to talk to", rank,
                                           i, ToString(a)));
      }
      PlannedComm c;
      c.action = i;
      c.send = IsSend(a.op);
      c.peer = message->peer;
      c.payload = message->payload;
      c.channel_seq = c.send ? sent[c.peer]++ : received[c.peer]++;
      plan.comm_of_action[i] = static_cast<int>(plan.comms.size());
      plan.comms.push_back(c);
      plan.retired_by.push_back(-1);
      if (plan.grouped) {
        open_group.push_back(plan.comm_of_action[i]);
      } else {
        PlannedUnit unit{{plan.comm_of_action[i]}, i};
        unit.stream = StreamOf(streams, c.peer, c.send);
        unit.stream_seq = stream_units[unit.stream]++;
        plan.unit_of_action[i] = static_cast<int>(plan.units.size());
        plan.units.push_back(std::move(unit));
      }
    } else if (a.op == Op::kWait && !open_group.empty()) {
      const int unit = static_cast<int>(plan.units.size());
      for (int c : open_group) plan.unit_of_action[plan.comms[c].action] = unit;
      plan.unit_of_action[i] = unit;
      plan.units.push_back({std::move(open_group), i});
      open_group.clear();
    }
  }
  // Once every unit is made: a grouped rank's WAIT_SEND may stand before the WAIT posting its SEND.
  const std::vector<int> waited = WaitedSendPositions(program);
  for (int i = 0; i < n; ++i) {
    if (waited[i] < 0) continue;
    plan.waited_unit_of_action[i] = plan.unit_of_action[waited[i]];
    const int comm = plan.comm_of_action[waited[i]];
    if (!plan.grouped && plan.retired_by[comm] < 0) plan.retired_by[comm] = i;
  }
  plan.unposted = std::move(open_group);
  return plan;
}

int64_t RunPlan::Actions(int rank) const {
  int64_t n = 0;
  for (const PassPlan& p : passes) n += static_cast<int64_t>(p.schedule.program[rank].size());
  return n;
}
int64_t RunPlan::Comms(int rank) const {
  int64_t n = 0;
  for (const PassPlan& p : passes) n += static_cast<int64_t>(p.ranks[rank].comms.size());
  return n;
}
int64_t RunPlan::Computes(int rank) const {
  int64_t n = 0;
  for (const PassPlan& p : passes) n += p.ranks[rank].computes;
  return n;
}
int64_t RunPlan::Units(int rank) const {
  int64_t n = 0;
  for (const PassPlan& p : passes) n += static_cast<int64_t>(p.ranks[rank].units.size());
  return n;
}

std::string RunPlan::NameAction(int rank, int64_t action) const {
  for (const PassPlan& p : passes) {
    const int64_t local = action - p.base[rank].action;
    if (local >= 0 && local < static_cast<int64_t>(p.schedule.program[rank].size())) {
      return fmt::format("{} [{}] {}", PassName(p.kind), local, ToString(p.schedule.program[rank][local]));
    }
  }
  return fmt::format("[{}] (after the last action)", action);
}

RunPlan PlanRun(const Schedule& schedule, StreamLayout streams) {
  RunPlan run;
  run.ranks = schedule.ranks;
  run.streams = streams;
  for (PassKind kind : {PassKind::kTrain, PassKind::kInference}) {
    PassPlan pass;
    pass.kind = kind;
    pass.schedule = kind == PassKind::kTrain ? schedule : ForwardOnly(schedule);
    RouteIndex routes(pass.schedule);
    for (int r = 0; r < schedule.ranks; ++r) {
      pass.ranks.push_back(PlanRank(pass.schedule, routes, r, streams));
      PassBase base;
      base.sent.assign(schedule.ranks, 0);
      base.received.assign(schedule.ranks, 0);
      if (!run.passes.empty()) {
        const PassPlan& prev = run.passes.back();
        const PassBase& pb = prev.base[r];
        const RankPlan& pr = prev.ranks[r];
        base.action = pb.action + static_cast<int64_t>(prev.schedule.program[r].size());
        base.comm = pb.comm + static_cast<int64_t>(pr.comms.size());
        base.compute = pb.compute + pr.computes;
        base.unit = pb.unit + static_cast<int64_t>(pr.units.size());
        base.sent = pb.sent;
        base.received = pb.received;
        for (const PlannedComm& c : pr.comms) ++(c.send ? base.sent : base.received)[c.peer];
      }
      pass.base.push_back(std::move(base));
    }
    run.passes.push_back(std::move(pass));
  }
  run.first_contacts.resize(schedule.ranks);
  if (streams == StreamLayout::kPair) {
    for (int r = 0; r < schedule.ranks; ++r) {
      const RankPlan& rank = run.passes.front().ranks[r];
      std::set<int> met;
      for (const PlannedUnit& unit : rank.units) {
        std::vector<int> fresh;
        for (int c : unit.comms) {
          if (met.insert(rank.comms[c].peer).second) fresh.push_back(rank.comms[c].peer);
        }
        if (!fresh.empty()) run.first_contacts[r].push_back(std::move(fresh));
      }
    }
  }
  return run;
}

}  // namespace pipeproof
