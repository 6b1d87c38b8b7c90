#include "render/timeline_view.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "schedule/json_text.h"
#include "schedule/lower.h"
#include "verify/repair.h"

namespace pipeproof {
namespace {

// "0-7", "0-3, 8, 10-11": a sorted list of integers as runs.
std::string Runs(const std::vector<int>& sorted) {
  std::string out;
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    while (j + 1 < sorted.size() && sorted[j + 1] == sorted[j] + 1) ++j;
    if (!out.empty()) out += ", ";
    out += j == i ? fmt::format("{}", sorted[i]) : fmt::format("{}-{}", sorted[i], sorted[j]);
    i = j + 1;
  }
  return out;
}

std::string Title(const Schedule& s) {
  return fmt::format("{} · {} ranks · {} stages · {} microbatches",
                     s.kind.empty() ? "schedule" : s.kind, s.ranks, s.stages, s.microbatches);
}

// Fills the view's chunk naming from the schedule's topology.
void DescribeChunks(const Schedule& s, TimelineView& view) {
  const std::vector<int> chunk = StageChunks(s);
  view.chunks = 1;
  for (int c : chunk) view.chunks = std::max(view.chunks, c + 1);
  if (view.chunks == 1) return;
  const bool v_shape = s.stages == 2 * s.ranks && s.placement == VPlacement(s.ranks, s.stages);
  view.chunk_name = v_shape ? "direction" : "chunk";
  for (int c = 0; c < view.chunks; ++c) {
    std::vector<int> stages, microbatches;
    for (int st = 0; st < s.stages; ++st) {
      if (chunk[st] == c) stages.push_back(st);
    }
    // The microbatches that stay in this chunk (DualPipe: one direction each).
    for (int m = 0; m < s.microbatches; ++m) {
      const auto& route = s.routes[m];
      if (!route.empty() &&
          std::all_of(route.begin(), route.end(), [&](int st) { return chunk[st] == c; })) {
        microbatches.push_back(m);
      }
    }
    std::string note = "stages " + Runs(stages);
    if (!microbatches.empty()) note += ", microbatches " + Runs(microbatches);
    view.chunk_notes.push_back(note);
  }
}


// A cell for action `a`, without its times.
TimelineCell CellOf(const Schedule& s, const std::vector<int>& chunk, int rank, int index,
                    const Action& a) {
  TimelineCell cell;
  cell.rank = rank;
  cell.index = index;
  cell.op = a.op;
  cell.comm = !IsCompute(a.op);
  cell.stage = a.stage;
  cell.microbatch = a.microbatch;
  cell.back = a.back;
  auto chunk_of = [&](int stage) {
    return stage >= 0 && stage < static_cast<int>(chunk.size()) ? chunk[stage] : 0;
  };
  if (a.op != Op::kWait) cell.chunk = chunk_of(a.stage);  // a WAIT names no stage
  if (a.op == Op::kOverlapFB) cell.back_chunk = chunk_of(a.back.stage);
  cell.label = ToString(a);
  return cell;
}

// Pairs the k-th SEND from p to q with the k-th RECV on q from p (NCCL has no tags).
void PairMessages(const Schedule& s, TimelineView& view) {
  const RouteIndex routes(s);
  std::map<std::pair<int, int>, std::deque<int>> sends, recvs;  // (from, to) -> cells
  std::map<int, std::string> payload;
  for (int c = 0; c < static_cast<int>(view.cells.size()); ++c) {
    const TimelineCell& cell = view.cells[c];
    if (!IsComm(cell.op)) continue;
    const std::optional<Message> m =
        MessageOf(s, routes, Task{cell.op, cell.stage, cell.microbatch});
    if (!m) continue;
    if (IsSend(cell.op)) {
      sends[{cell.rank, m->peer}].push_back(c);
      payload[c] = ToString(m->payload);
    } else {
      recvs[{m->peer, cell.rank}].push_back(c);
    }
  }
  for (auto& [pair, out] : sends) {
    std::deque<int>& in = recvs[pair];
    while (!out.empty() && !in.empty()) {
      TimelineMessage m;
      m.from = pair.first;
      m.to = pair.second;
      m.send_cell = out.front();
      m.recv_cell = in.front();
      m.sent = view.cells[m.send_cell].start;
      m.received = view.cells[m.recv_cell].end;
      m.what = payload[m.send_cell];
      view.messages.push_back(std::move(m));
      out.pop_front();
      in.pop_front();
    }
  }
  std::sort(view.messages.begin(), view.messages.end(),
            [](const TimelineMessage& a, const TimelineMessage& b) { return a.sent < b.sent; });
}

// The cells of every action that ran (finite start and end) of a simulated timeline.
void AddSimulatedCells(const Schedule& s, const Timeline& t, const Costs& costs,
                       TimelineView& view) {
  const std::vector<int> chunk = StageChunks(s);
  for (int r = 0; r < s.ranks && r < static_cast<int>(t.ranks.size()); ++r) {
    for (int i = 0;
         i < static_cast<int>(s.program[r].size()) && i < static_cast<int>(t.ranks[r].size());
         ++i) {
      const TimedAction& ta = t.ranks[r][i];
      if (!std::isfinite(ta.start) || !std::isfinite(ta.end)) continue;
      TimelineCell cell = CellOf(s, chunk, r, i, s.program[r][i]);
      cell.start = ta.start;
      cell.end = ta.end;
      if (cell.op == Op::kOverlapFB) {
        const double f = costs.forward, b = CostOf(cell.back.op, costs);
        cell.split = f + b > 0 ? f / (f + b) : 0.5;
      }
      view.cells.push_back(std::move(cell));
    }
  }
}

std::string Percent(double ratio) { return fmt::format("{:.1f}%", 100 * ratio); }

}  // namespace

std::vector<int> StageChunks(const Schedule& s) {
  std::vector<int> chunk(s.stages, 0);
  std::vector<int> held(s.ranks, 0);
  for (int st = 0; st < s.stages && st < static_cast<int>(s.placement.size()); ++st) {
    const int r = s.placement[st];
    if (r >= 0 && r < s.ranks) chunk[st] = held[r]++;
  }
  return chunk;
}

std::string_view CellKindName(Op op) {
  switch (op) {
    case Op::kForward:
      return "forward";
    case Op::kBackward:
      return "backward";
    case Op::kInputGrad:
      return "input-grad";
    case Op::kWeightGrad:
      return "weight-grad";
    case Op::kOverlapFB:
      return "overlap-f-b";
    case Op::kSendF:
    case Op::kSendB:
      return "send";
    case Op::kRecvF:
    case Op::kRecvB:
      return "recv";
    case Op::kWait:
      return "wait";
    case Op::kWaitSendF:
    case Op::kWaitSendB:
      return "wait-send";
    case Op::kUnshard:
    case Op::kReshard:
    case Op::kReduceGrad:
    case Op::kWaitReduceGrad:
      return "data-parallel";
  }
  return "?";
}

TimelineView SimulatedView(const Schedule& schedule, const Timeline& timeline, const Costs& costs,
                           CommModel model, StreamLayout streams) {
  TimelineView view;
  view.ranks = schedule.ranks;
  view.microbatches = schedule.microbatches;
  view.title = Title(schedule);
  DescribeChunks(schedule, view);
  AddSimulatedCells(schedule, timeline, costs, view);
  PairMessages(schedule, view);
  view.makespan = timeline.makespan;
  view.bubble_ratio = timeline.BubbleRatio();
  int worst = 0;
  for (int r = 0; r < static_cast<int>(timeline.bubble.size()); ++r) {
    if (timeline.bubble[r] > timeline.bubble[worst]) worst = r;
  }
  view.subtitle = fmt::format(
      "makespan {:g} · bubble ratio {} (largest bubble {:g}, rank {}) · simulated, {} model{}, {}",
      timeline.makespan, Percent(timeline.BubbleRatio()), timeline.MaxBubble(), worst,
      CommModelName(model),
      model == CommModel::kNccl && streams != StreamLayout::kRank
          ? fmt::format(" (--streams {})", StreamLayoutName(streams))
          : "",
      ToString(costs));
  return view;
}

TimelineView RecordedView(const Schedule& schedule, const RunTimeline& run, std::string_view pass,
                          std::string_view name) {
  if (run.ranks != schedule.ranks) {
    throw InputError(fmt::format("the recorded run has {} ranks but the schedule has {}", run.ranks,
                                 schedule.ranks));
  }
  TimelineView view;
  view.ranks = schedule.ranks;
  view.microbatches = schedule.microbatches;
  view.title = Title(schedule);
  view.time_unit = "ms";
  DescribeChunks(schedule, view);
  const std::vector<int> chunk = StageChunks(schedule);
  const Costs defaults;
  std::vector<int> cell_of_span(run.spans.size(), -1);
  double first = INFINITY, last = -INFINITY;
  for (size_t k = 0; k < run.spans.size(); ++k) {
    const RunTimeline::Span& span = run.spans[k];
    if (!pass.empty() && span.pass != pass) continue;
    Action a;
    try {
      a = ParseAction(span.action);
    } catch (const InputError&) {
      continue;  // a report from another version: draw what can be read
    }
    // A report of another schedule with as many ranks must not be drawn over this one: every
    // training action it recorded stands at its place in this schedule.
    if (span.pass == "train") {
      const auto& program = schedule.program[span.rank];
      const bool in_range = span.index >= 0 && span.index < static_cast<int>(program.size());
      if (!in_range || !(program[span.index] == a)) {
        throw InputError(fmt::format(
            "the recorded run is not of this schedule: its rank {} ran {} at [{}], where this "
            "schedule has {}",
            span.rank, span.action, span.index,
            in_range ? ToString(program[span.index]) : "no action"));
      }
    }
    TimelineCell cell = CellOf(schedule, chunk, span.rank, span.index, a);
    cell.comm = span.comm;
    cell.start = span.start * 1e3;
    cell.end = span.end * 1e3;
    cell.detail = span.ops;
    cell.pass = span.pass;
    // The executor runs an OVERLAP_F_B's two tasks one after the other and records the unit:
    // its split is drawn in the default cost ratio.
    if (cell.op == Op::kOverlapFB) cell.split = defaults.forward / defaults.overlap_fb;
    first = std::min(first, cell.start);
    last = std::max(last, cell.end);
    cell_of_span[k] = static_cast<int>(view.cells.size());
    view.cells.push_back(std::move(cell));
  }
  if (view.cells.empty()) {
    throw InputError(fmt::format("the recorded run has no {}spans to draw",
                                 pass.empty() ? "" : std::string(pass) + " "));
  }
  view.time_origin = first;
  view.makespan = last - first;
  std::vector<double> busy(view.ranks, 0.0);
  for (const TimelineCell& c : view.cells) {
    if (!c.comm) busy[c.rank] += c.end - c.start;
  }
  double idle = 0;
  for (double b : busy) idle += view.makespan - b;
  view.bubble_ratio = view.makespan > 0 ? idle / (view.ranks * view.makespan) : 0;
  for (const RunTimeline::Message& m : run.messages) {
    if (cell_of_span[m.send_span] < 0 || cell_of_span[m.recv_span] < 0) continue;
    view.messages.push_back({m.from, m.to, m.sent * 1e3, m.received * 1e3, m.payload,
                             cell_of_span[m.send_span], cell_of_span[m.recv_span]});
  }
  view.subtitle = fmt::format(
      "as it ran{}{}{} · makespan {:.3f} ms · compute idle (bubble ratio) {}",
      name.empty() ? "" : " on ", name, pass.empty() ? "" : fmt::format(" · {} pass", pass),
      view.makespan, Percent(*view.bubble_ratio));
  return view;
}

RunTimeline RunTimelineFromReport(std::string_view report_json, std::string* transport) {
  nlohmann::json report;
  try {
    report = nlohmann::json::parse(report_json);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("not a JSON run report: " + JsonParserMessage(e.what()));
  }
  if (!report.is_object() || !report.contains("timeline")) {
    throw std::runtime_error(
        "the report has no recorded timeline: write it with pipeproof run --report FILE (a run "
        "that "
        "hung or failed records none)");
  }
  if (transport) *transport = report.value("transport", "");
  return RunTimeline::FromJson(report["timeline"].dump());
}

TimelineView DeadlockView(const Schedule& schedule, const Timeline& partial,
                          const std::vector<CycleStep>& cycle, CommModel model,
                          StreamLayout streams) {
  TimelineView view;
  view.ranks = schedule.ranks;
  view.microbatches = schedule.microbatches;
  view.title = Title(schedule) + " · DEADLOCK";
  DescribeChunks(schedule, view);
  AddSimulatedCells(schedule, partial, Costs{}, view);
  for (const TimelineCell& c : view.cells) view.stuck_at = std::max(view.stuck_at, c.end);
  view.makespan = view.stuck_at;
  std::set<std::pair<int, int>> on_cycle;
  for (size_t k = 0; k < cycle.size(); ++k) {
    view.stuck.push_back(
        {cycle[k].rank, cycle[k].index, cycle[k].action, cycle[k].waits_for, static_cast<int>(k)});
    on_cycle.insert({cycle[k].rank, cycle[k].index});
  }
  // Every other rank's first action that never completes: where it is stuck, off the cycle.
  for (int r = 0; r < schedule.ranks && r < static_cast<int>(partial.ranks.size()); ++r) {
    for (const TimedAction& ta : partial.ranks[r]) {
      if (std::isfinite(ta.end)) continue;
      bool rank_on_cycle = false;
      for (const auto& [cr, ci] : on_cycle) rank_on_cycle = rank_on_cycle || cr == r;
      if (!rank_on_cycle)
        view.stuck.push_back({r, ta.index, ToString(schedule.program[r][ta.index]), "", -1});
      break;
    }
  }
  view.subtitle = fmt::format(
      "under {} the execution stops at t = {:g}: {} blocked actions wait for each other in a "
      "cycle (red, numbered in order: each waits for the next)",
      DescribeSemantics(model, streams), view.stuck_at, cycle.size());
  for (size_t k = 0; k < cycle.size(); ++k) {
    view.notes.push_back(fmt::format("{}. rank {} [{}] {} {}", k + 1, cycle[k].rank, cycle[k].index,
                                     cycle[k].action, cycle[k].waits_for));
  }
  return view;
}

TimelineView VerifiedView(const Schedule& input, const VerifyReport& report) {
  Schedule s = input;
  CompleteTopology(s);
  if (report.lowered) s = LowerIfComputeOnly(std::move(s));
  if (!report.cycle.empty()) {
    return DeadlockView(s, Simulate(s, report.model, report.costs, report.streams), report.cycle,
                        report.model, report.streams);
  }
  if (report.timeline) {
    return SimulatedView(s, *report.timeline, report.costs, report.model, report.streams);
  }
  throw InputError(
      "nothing to draw: the schedule has no timeline (" +
      std::string(report.checks.empty() ? "not verified" : report.checks.front().message) + ")");
}

TimelineView ScheduleView(const Schedule& schedule, CommModel model, const Costs& costs,
                          StreamLayout streams) {
  const Timeline timeline = Simulate(schedule, model, costs, streams);
  if (timeline.complete) return SimulatedView(schedule, timeline, costs, model, streams);
  VerifyOptions options;
  options.model = model;
  options.streams = streams;
  options.costs = costs;
  options.use_z3 = false;
  return VerifiedView(schedule, Verify(schedule, options));
}

TimelineView DiffView(const Schedule& original, const Schedule& repaired, CommModel model,
                      const Costs& costs, StreamLayout streams) {
  const std::vector<RepairEdit> edits = CommunicationDiff(original, repaired);  // throws first
  TimelineView view = ScheduleView(repaired, model, costs, streams);
  constexpr size_t kListed = 12;  // a long diff is listed by pipeproof repair, not under a picture
  int removed = 0;
  for (size_t k = 0; k < edits.size(); ++k) {
    const RepairEdit& e = edits[k];
    if (k < kListed) view.notes.push_back(Describe(e));
    if (e.kind == RepairEdit::Kind::kRemove) {
      ++removed;
    } else {
      view.edits.push_back({e.rank, e.to, std::string(RepairEditKindName(e.kind)), Describe(e)});
    }
  }
  if (edits.size() > kListed) view.notes.push_back(fmt::format("... and {} more", edits.size() - kListed));
  view.notes.insert(view.notes.begin(),
                    fmt::format("{} edit{} of the communication against the original: {} marked on the "
                                "communication strip (moved, added), {} removed",
                                edits.size(), edits.size() == 1 ? "" : "s", view.edits.size(), removed));
  return view;
}

}  // namespace pipeproof
