#include "render/perfetto_trace.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

namespace pipeproof {
namespace {

constexpr int kComputeThread = 1;
constexpr int kCommThread = 2;  // the first communication lane; more lanes get the next ids

// Communication slices of one rank spread over lanes so that no two slices in a lane overlap
// without nesting (trace viewers reject that): a lane takes a slice that begins after its open
// slices end or fits inside the innermost one. Recorded runs need one lane (a stream runs units
// one at a time); simulations may need more (the eager model's units run side by side).
class Lanes {
 public:
  int Place(int64_t begin, int64_t end) {
    for (size_t k = 0;; ++k) {
      if (k == open_.size()) open_.emplace_back();
      std::vector<int64_t>& stack = open_[k];
      while (!stack.empty() && stack.back() <= begin) stack.pop_back();
      if (stack.empty() || end <= stack.back()) {
        stack.push_back(end);
        return static_cast<int>(k);
      }
    }
  }
  int count() const { return static_cast<int>(open_.size()); }

 private:
  std::vector<std::vector<int64_t>> open_;  // per lane: the ends of its open slices, innermost last
};

// chrome://tracing's reserved colour names (Perfetto picks its own colours by name).
std::string_view ColourName(std::string_view kind) {
  if (kind == "forward") return "yellow";
  if (kind == "backward") return "good";
  if (kind == "input-grad") return "olive";
  if (kind == "weight-grad") return "rail_load";
  if (kind == "overlap-f-b") return "thread_state_iowait";
  return "grey";
}

nlohmann::json Metadata(std::string_view what, int pid, int tid, nlohmann::json args) {
  nlohmann::json e = {{"ph", "M"}, {"name", what}, {"pid", pid}, {"args", std::move(args)}};
  if (tid >= 0) e["tid"] = tid;
  return e;
}

}  // namespace

std::string PerfettoTrace(const TimelineView& view, const TraceOptions& options) {
  // Times in whole nanoseconds from the view's origin, written as microseconds with three
  // decimals: a nested slice then ends exactly where its parent does after the viewer's rounding.
  const double scale = view.time_unit.empty()   ? options.sim_unit_us
                       : view.time_unit == "ms" ? 1000.0
                                                : 1e6;
  auto ns = [&](double t) {
    return static_cast<int64_t>(std::llround((t - view.time_origin) * scale * 1000));
  };
  auto us = [](int64_t t) { return static_cast<double>(t) / 1000; };
  // A zero-length unit (a simulation without latency) still gets a sliver of 10 ns, so that a
  // flow arrow has a slice to bind to.
  auto span = [&](const TimelineCell& c) {
    const int64_t b = ns(c.start);
    return std::pair<int64_t, int64_t>{b, std::max(ns(c.end), c.comm ? b + 10 : b)};
  };

  nlohmann::json events = nlohmann::json::array();
  auto complete = [&](std::string_view name, std::string_view kind, int rank, int tid,
                      int64_t begin, int64_t end, nlohmann::json args) {
    events.push_back({{"ph", "X"},
                      {"name", name},
                      {"cat", kind},
                      {"pid", rank},
                      {"tid", tid},
                      {"ts", us(begin)},
                      {"dur", us(end - begin)},
                      {"cname", ColourName(kind)},
                      {"args", std::move(args)}});
  };
  std::vector<Lanes> lanes(view.ranks);
  std::vector<std::pair<int64_t, int64_t>> slice_of(view.cells.size());
  std::vector<int> tid_of(view.cells.size(), kComputeThread);
  std::vector<int> order(view.cells.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = static_cast<int>(k);
  // Longer first among slices that begin together, so that a WAIT's group holds its ops.
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    const auto sa = span(view.cells[a]), sb = span(view.cells[b]);
    return sa.first != sb.first ? sa.first < sb.first : sa.second > sb.second;
  });
  for (int k : order) slice_of[k] = span(view.cells[k]);
  // A receive that completes the instant its send starts (a simulation without latency) is
  // stretched by a few nanoseconds, so that its flow arrow points forward in time.
  for (const TimelineMessage& m : view.messages) {
    if (m.send_cell < 0 || m.recv_cell < 0) continue;
    auto& recv = slice_of[m.recv_cell];
    recv.second = std::max(recv.second, slice_of[m.send_cell].first + 10);
  }
  for (int k : order) {
    const TimelineCell& c = view.cells[k];
    if (c.comm && c.rank >= 0 && c.rank < view.ranks) {
      tid_of[k] = kCommThread + lanes[c.rank].Place(slice_of[k].first, slice_of[k].second);
    }
  }
  for (int r = 0; r < view.ranks; ++r) {
    events.push_back(Metadata("process_name", r, -1, {{"name", "rank " + std::to_string(r)}}));
    events.push_back(Metadata("process_sort_index", r, -1, {{"sort_index", r}}));
    events.push_back(Metadata("thread_name", r, kComputeThread, {{"name", "compute"}}));
    events.push_back(Metadata("thread_sort_index", r, kComputeThread, {{"sort_index", 0}}));
    for (int lane = 0; lane < std::max(lanes[r].count(), 1); ++lane) {
      const std::string name =
          lane == 0 ? "communication" : "communication " + std::to_string(lane + 1);
      events.push_back(Metadata("thread_name", r, kCommThread + lane, {{"name", name}}));
      events.push_back(
          Metadata("thread_sort_index", r, kCommThread + lane, {{"sort_index", 1 + lane}}));
    }
  }
  for (size_t k = 0; k < view.cells.size(); ++k) {
    const TimelineCell& c = view.cells[k];
    const std::string_view kind = CellKindName(c.op);
    nlohmann::json args = {{"rank", c.rank}, {"index", c.index}};
    if (c.op != Op::kWait) {
      args["stage"] = c.stage;
      args["microbatch"] = c.microbatch;
      args["chunk"] = c.chunk;
    }
    if (!c.pass.empty()) args["pass"] = c.pass;
    if (!c.detail.empty()) args["ops"] = c.detail;
    const auto [begin, end] = slice_of[k];
    complete(c.label, kind, c.rank, tid_of[k], begin, end, args);
    if (c.op == Op::kOverlapFB) {  // its two parts, nested
      const int64_t mid = begin + static_cast<int64_t>(std::llround((end - begin) * c.split));
      complete(ToString(Task{Op::kForward, c.stage, c.microbatch}), "forward", c.rank, tid_of[k],
               begin, mid, {{"stage", c.stage}, {"microbatch", c.microbatch}, {"chunk", c.chunk}});
      complete(
          ToString(c.back), CellKindName(c.back.op), c.rank, tid_of[k], mid, end,
          {{"stage", c.back.stage}, {"microbatch", c.back.microbatch}, {"chunk", c.back_chunk}});
    }
  }
  // A flow's ends sit inside the slices they bind to: just after the sender's unit starts, just
  // before the receiver's unit completes.
  int id = 0;
  for (const TimelineMessage& m : view.messages) {
    if (m.send_cell < 0 || m.recv_cell < 0) continue;
    ++id;
    const auto [send_begin, send_end] = slice_of[m.send_cell];
    const auto [recv_begin, recv_end] = slice_of[m.recv_cell];
    events.push_back({{"ph", "s"},
                      {"id", id},
                      {"name", "message"},
                      {"cat", "message"},
                      {"pid", m.from},
                      {"tid", tid_of[m.send_cell]},
                      {"ts", us(send_begin + std::min<int64_t>((send_end - send_begin) / 2, 5))},
                      {"args", {{"payload", m.what}, {"to", m.to}}}});
    // "bp":"e": bind to the slice that encloses the timestamp (the receiver's unit).
    events.push_back({{"ph", "f"},
                      {"bp", "e"},
                      {"id", id},
                      {"name", "message"},
                      {"cat", "message"},
                      {"pid", m.to},
                      {"tid", tid_of[m.recv_cell]},
                      {"ts", us(recv_end - std::min<int64_t>((recv_end - recv_begin) / 2, 5))},
                      {"args", {{"payload", m.what}, {"from", m.from}}}});
  }
  nlohmann::json trace;
  trace["traceEvents"] = std::move(events);
  trace["displayTimeUnit"] = "ms";
  trace["otherData"] = {
      {"title", view.title},
      {"subtitle", view.subtitle},
      {"time", view.time_unit.empty() ? "simulated: one cost unit = " +
                                            nlohmann::json(options.sim_unit_us).dump() + " us"
                                      : std::string("recorded")}};
  return trace.dump() + "\n";
}

}  // namespace pipeproof
