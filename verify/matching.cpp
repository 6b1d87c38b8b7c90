// matching: NCCL point-to-point traffic has no tags, so per ordered rank pair the k-th SEND
// meets the k-th RECV whatever each names. This file pairs them and reports mix-ups.

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "verify/internal.h"

namespace pipeproof::verify_internal {

Messages MatchMessages(const Schedule& s, const RouteIndex& routes) {
  Messages out;
  out.payload.resize(s.ranks);
  out.peer.resize(s.ranks);
  out.partner.resize(s.ranks);
  // (from, to) -> the SEND positions on `from`, the RECV positions on `to`, in program order.
  std::map<std::pair<int, int>, std::pair<std::vector<int32_t>, std::vector<int32_t>>> channels;
  for (int r = 0; r < s.ranks; ++r) {
    const auto& program = s.program[r];
    out.payload[r].resize(program.size());
    out.peer[r].assign(program.size(), -1);
    out.partner[r].assign(program.size(), Endpoint{});
    for (int i = 0; i < static_cast<int>(program.size()); ++i) {
      if (!IsComm(program[i].op)) continue;
      const std::optional<Message> m = MessageOf(s, routes, program[i].TaskAt(0));
      if (!m) continue;  // structure reports it
      out.payload[r][i] = m->payload;
      out.peer[r][i] = m->peer;
      if (IsSend(program[i].op)) {
        channels[{r, m->peer}].first.push_back(i);
      } else {
        channels[{m->peer, r}].second.push_back(i);
      }
    }
  }
  for (const auto& [pair, ends] : channels) {
    const auto& [sends, recvs] = ends;
    for (size_t k = 0; k < sends.size() && k < recvs.size(); ++k) {
      out.partner[pair.first][sends[k]] = {pair.second, recvs[k]};
      out.partner[pair.second][recvs[k]] = {pair.first, sends[k]};
    }
  }
  return out;
}

CheckResult CheckMatching(const Schedule& s, const Messages& messages) {
  Findings found;
  int64_t pairs = 0;
  for (int r = 0; r < s.ranks; ++r) {
    for (int i = 0; i < static_cast<int>(s.program[r].size()); ++i) {
      const Op op = s.program[r][i].op;
      if (!IsComm(op) || messages.peer[r][i] < 0) continue;
      const Endpoint other = messages.partner[r][i];
      if (!other.valid()) {
        const int peer = messages.peer[r][i];
        found.Add(fmt::format("{} ({}) is left over: rank {} has no matching {} {} rank {}",
                              Where(s, r, i), ToString(messages.payload[r][i]), peer,
                              IsSend(op) ? "RECV" : "SEND", IsSend(op) ? "from" : "to", r));
        continue;
      }
      if (!IsSend(op)) continue;  // each message once, from its SEND
      ++pairs;
      const Payload& sent = messages.payload[r][i];
      const Payload& expected = messages.payload[other.rank][other.index];
      if (sent != expected) {
        found.Add(fmt::format("mix-up: {} sends {}, but the receive it meets, {}, expects {}",
                              Where(s, r, i), ToString(sent), Where(s, other.rank, other.index),
                              ToString(expected)));
      }
    }
  }
  return found.Result("matching",
                      fmt::format("{} messages, every SEND meets the RECV that names its payload "
                                  "(FIFO per rank pair), none left over",
                                  pairs),
                      "problem");
}

int64_t PayloadSlots(const Schedule& s) { return int64_t{2} * s.stages * s.microbatches; }

int64_t PayloadSlot(const Schedule& s, const Payload& p) {
  const int64_t kind = p.kind == Payload::Kind::kActivation ? 0 : 1;
  return (kind * s.stages + p.to) * s.microbatches + p.microbatch;
}

ReceiveIndex::ReceiveIndex(const Schedule& s, const Messages& messages)
    : s_(s), head_(PayloadSlots(s), -1) {
  // Each RECV adds one entry or two: room for two each, written once instead of grown.
  size_t recvs = 0;
  for (const auto& program : s.program) {
    recvs += std::count_if(program.begin(), program.end(), [](const Action& a) { return IsRecv(a.op); });
  }
  entries_.reserve(2 * recvs);
  for (int r = 0; r < s.ranks; ++r) {
    for (int i = 0; i < static_cast<int>(s.program[r].size()); ++i) {
      if (!IsRecv(s.program[r][i].op) || messages.peer[r][i] < 0) continue;
      const Payload& own = messages.payload[r][i];
      Add(own, i);
      const Endpoint other = messages.partner[r][i];
      if (other.valid()) {
        const Payload& sent = messages.payload[other.rank][other.index];
        // Only a payload that arrives on this rank can be read here.
        if (sent != own && s.placement[sent.to] == r) Add(sent, i);
      }
    }
  }
}

void ReceiveIndex::Add(const Payload& p, int32_t index) {
  int64_t slot = PayloadSlot(s_, p);
  entries_.push_back({index, head_[slot]});
  head_[slot] = static_cast<int32_t>(entries_.size() - 1);
}

Payload NeededPayload(const PassKey& need, const Task& consumer) {
  if (need.pass == Pass::kForward) {
    return {Payload::Kind::kActivation, need.stage, consumer.stage, consumer.microbatch};
  }
  return {Payload::Kind::kGradient, need.stage, consumer.stage, consumer.microbatch};
}

PassKey SentPass(const Payload& p) {
  return {p.kind == Payload::Kind::kActivation ? Pass::kForward : Pass::kBackward, p.from,
          p.microbatch};
}

}  // namespace pipeproof::verify_internal
