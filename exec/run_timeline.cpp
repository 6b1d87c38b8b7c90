#include "exec/run_timeline.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <tuple>

#include "schedule/json_text.h"

namespace pipeproof {

void SpanLog::Add(const RecordedSpan& span) {
  std::lock_guard lock(mutex_);
  spans_.push_back(span);
}

std::vector<RecordedSpan> SpanLog::Take() {
  std::lock_guard lock(mutex_);
  return std::move(spans_);
}

namespace {

// The pass a run-wide action index of `rank` falls in, or -1.
int PassOf(const RunPlan& plan, int rank, int64_t action) {
  for (size_t p = 0; p < plan.passes.size(); ++p) {
    const PassPlan& pass = plan.passes[p];
    const int64_t begin = pass.base[rank].action;
    if (action >= begin &&
        action < begin + static_cast<int64_t>(pass.schedule.program[rank].size())) {
      return static_cast<int>(p);
    }
  }
  return -1;
}

// "0SEND_F2 -> 1, 7RECV_B0 <- 1": what a unit carries.
std::string UnitOps(const PassPlan& pass, int rank, const PlannedUnit& unit) {
  std::string out;
  for (int c : unit.comms) {
    const PlannedComm& comm = pass.ranks[rank].comms[c];
    if (!out.empty()) out += ", ";
    out += fmt::format("{} {} {}", ToString(pass.schedule.program[rank][comm.action]),
                       comm.send ? "->" : "<-", comm.peer);
  }
  return out;
}

// Where one message's two ends were found: (from, to, run-wide sequence) -> span indices.
struct MessageEnds {
  int pass = 0;
  Payload payload;
  int send_span = -1;
  int recv_span = -1;
};

}  // namespace

RunTimeline BuildRunTimeline(const RunPlan& plan,
                             const std::vector<std::vector<RecordedSpan>>& spans) {
  RunTimeline t;
  t.ranks = plan.ranks;
  int64_t origin = std::numeric_limits<int64_t>::max();
  for (const auto& rank_spans : spans) {
    for (const RecordedSpan& s : rank_spans) origin = std::min(origin, s.begin_ns);
  }
  auto seconds = [&](int64_t ns) { return static_cast<double>(ns - origin) * 1e-9; };

  std::map<std::tuple<int, int, int64_t>, MessageEnds> messages;
  for (int r = 0; r < static_cast<int>(spans.size()) && r < plan.ranks; ++r) {
    std::vector<RecordedSpan> sorted = spans[r];
    std::stable_sort(
        sorted.begin(), sorted.end(),
        [](const RecordedSpan& a, const RecordedSpan& b) { return a.begin_ns < b.begin_ns; });
    for (const RecordedSpan& s : sorted) {
      const int p = PassOf(plan, r, s.action);
      if (p < 0) continue;
      const PassPlan& pass = plan.passes[p];
      const PassBase& base = pass.base[r];
      RunTimeline::Span span;
      span.rank = r;
      span.comm = s.comm;
      span.pass = std::string(PassName(pass.kind));
      span.index = static_cast<int>(s.action - base.action);
      span.action = ToString(pass.schedule.program[r][span.index]);
      span.start = seconds(s.begin_ns);
      span.end = seconds(s.end_ns);
      const int span_id = static_cast<int>(t.spans.size());
      const int64_t local_unit = s.unit - base.unit;
      if (s.comm && local_unit >= 0 &&
          local_unit < static_cast<int64_t>(pass.ranks[r].units.size())) {
        const PlannedUnit& unit = pass.ranks[r].units[local_unit];
        span.ops = UnitOps(pass, r, unit);
        for (int c : unit.comms) {
          const PlannedComm& comm = pass.ranks[r].comms[c];
          const int from = comm.send ? r : comm.peer, to = comm.send ? comm.peer : r;
          const int64_t seq =
              comm.channel_seq + (comm.send ? base.sent[comm.peer] : base.received[comm.peer]);
          MessageEnds& ends = messages[{from, to, seq}];
          ends.pass = p;
          ends.payload = comm.payload;
          (comm.send ? ends.send_span : ends.recv_span) = span_id;
        }
      }
      t.spans.push_back(std::move(span));
    }
  }
  for (const auto& [key, ends] : messages) {
    if (ends.send_span < 0 || ends.recv_span < 0) continue;
    RunTimeline::Message m;
    m.from = std::get<0>(key);
    m.to = std::get<1>(key);
    m.pass = std::string(PassName(plan.passes[ends.pass].kind));
    m.payload = ToString(ends.payload);
    m.send_span = ends.send_span;
    m.recv_span = ends.recv_span;
    m.sent = t.spans[ends.send_span].start;
    m.received = t.spans[ends.recv_span].end;
    t.messages.push_back(std::move(m));
  }
  std::sort(
      t.messages.begin(), t.messages.end(),
      [](const RunTimeline::Message& a, const RunTimeline::Message& b) { return a.sent < b.sent; });
  return t;
}

std::string RunTimeline::Json() const {
  nlohmann::json j;
  j["ranks"] = ranks;
  j["time_unit"] = "s";
  j["spans"] = nlohmann::json::array();
  for (const Span& s : spans) {
    nlohmann::json js = {{"rank", s.rank},     {"stream", s.comm ? "comm" : "compute"},
                         {"pass", s.pass},     {"index", s.index},
                         {"action", s.action}, {"start", s.start},
                         {"end", s.end}};
    if (s.comm) js["ops"] = s.ops;
    j["spans"].push_back(std::move(js));
  }
  j["messages"] = nlohmann::json::array();
  for (const Message& m : messages) {
    j["messages"].push_back({{"from", m.from},
                             {"to", m.to},
                             {"pass", m.pass},
                             {"payload", m.payload},
                             {"send_span", m.send_span},
                             {"recv_span", m.recv_span},
                             {"sent", m.sent},
                             {"received", m.received}});
  }
  return j.dump();
}

RunTimeline RunTimeline::FromJson(std::string_view text) {
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    RunTimeline t;
    t.ranks = j.at("ranks").get<int>();
    for (const auto& js : j.at("spans")) {
      Span s;
      s.rank = js.at("rank").get<int>();
      s.comm = js.at("stream").get<std::string>() == "comm";
      s.pass = js.at("pass").get<std::string>();
      s.index = js.at("index").get<int>();
      s.action = js.at("action").get<std::string>();
      s.ops = js.value("ops", "");
      s.start = js.at("start").get<double>();
      s.end = js.at("end").get<double>();
      if (s.rank < 0 || s.rank >= t.ranks)
        throw std::runtime_error(fmt::format("span of rank {} out of range", s.rank));
      t.spans.push_back(std::move(s));
    }
    for (const auto& jm : j.at("messages")) {
      Message m;
      m.from = jm.at("from").get<int>();
      m.to = jm.at("to").get<int>();
      m.pass = jm.at("pass").get<std::string>();
      m.payload = jm.at("payload").get<std::string>();
      m.send_span = jm.at("send_span").get<int>();
      m.recv_span = jm.at("recv_span").get<int>();
      m.sent = jm.at("sent").get<double>();
      m.received = jm.at("received").get<double>();
      const int n = static_cast<int>(t.spans.size());
      if (m.send_span < 0 || m.send_span >= n || m.recv_span < 0 || m.recv_span >= n) {
        throw std::runtime_error("a message names a span that is not there");
      }
      t.messages.push_back(std::move(m));
    }
    return t;
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("bad run timeline: " + JsonParserMessage(e.what()));
  }
}

}  // namespace pipeproof
