// Chrome/Perfetto traces of a simulation and of a real run: the Trace Event Format's structure
// (metadata names, complete events, flow pairs bound inside slices, slices nested, never
// crossing), every action present per rank and stream, and the recorded timeline that a run
// report carries.
#include "render/perfetto_trace.h"

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "exec/fault_draw.h"
#include "exec/run.h"
#include "schedule/generate.h"

namespace pipeproof {
namespace {

using nlohmann::json;

Schedule Generated(const std::string& kind, int ranks, int microbatches) {
  return Generate({.kind = kind, .ranks = ranks, .microbatches = microbatches});
}

struct Slice {
  int64_t begin = 0;  // nanoseconds, as a viewer reads the microsecond values
  int64_t end = 0;
};
int64_t Ns(const json& ts) { return static_cast<int64_t>(std::llround(ts.get<double>() * 1000)); }

// Checks the format's rules every viewer relies on; returns the X events per (pid, tid).
std::map<std::pair<int, int>, std::vector<Slice>> CheckTraceStructure(const json& trace) {
  std::map<std::pair<int, int>, std::vector<Slice>> slices;
  EXPECT_TRUE(trace.is_object());
  const json& events = trace.at("traceEvents");
  EXPECT_TRUE(events.is_array());
  std::map<int, json> flow_start, flow_end;
  std::set<std::pair<int, int>> named_threads;
  std::set<int> named_processes;
  for (const json& e : events) {
    const std::string ph = e.at("ph");
    if (ph == "M") {
      if (e.at("name") == "process_name") named_processes.insert(e.at("pid").get<int>());
      if (e.at("name") == "thread_name")
        named_threads.insert({e.at("pid").get<int>(), e.at("tid").get<int>()});
      EXPECT_TRUE(e.at("args").is_object());
    } else if (ph == "X") {
      EXPECT_TRUE(e.at("name").is_string());
      EXPECT_TRUE(e.at("cat").is_string());
      EXPECT_GE(e.at("dur").get<double>(), 0);
      slices[{e.at("pid").get<int>(), e.at("tid").get<int>()}].push_back(
          {Ns(e.at("ts")), Ns(e.at("ts")) + Ns(e.at("dur"))});
    } else if (ph == "s") {
      EXPECT_TRUE(flow_start.emplace(e.at("id").get<int>(), e).second) << "flow ids are unique";
    } else if (ph == "f") {
      EXPECT_EQ(e.at("bp"), "e");
      EXPECT_TRUE(flow_end.emplace(e.at("id").get<int>(), e).second);
    } else {
      ADD_FAILURE() << "unexpected phase " << ph;
    }
  }
  for (const auto& [track, list] : slices) {
    EXPECT_TRUE(named_processes.count(track.first)) << "process " << track.first << " has a name";
    EXPECT_TRUE(named_threads.count(track))
        << "thread " << track.second << " of " << track.first << " has a name";
  }
  // Slices on one track nest or follow each other; none crosses another.
  for (auto& [track, list] : slices) {
    std::sort(list.begin(), list.end(), [](const Slice& a, const Slice& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end > b.end;
    });
    std::vector<int64_t> open;
    for (const Slice& s : list) {
      while (!open.empty() && open.back() <= s.begin) open.pop_back();
      EXPECT_TRUE(open.empty() || s.end <= open.back())
          << "slice [" << s.begin << ", " << s.end << ") crosses its parent on pid " << track.first
          << " tid " << track.second;
      open.push_back(s.end);
    }
  }
  // Every flow starts and ends inside a slice of its track, from one rank to another.
  EXPECT_EQ(flow_start.size(), flow_end.size());
  auto inside = [&](const json& e) {
    const auto& list = slices[{e.at("pid").get<int>(), e.at("tid").get<int>()}];
    const int64_t t = Ns(e.at("ts"));
    return std::any_of(list.begin(), list.end(),
                       [&](const Slice& s) { return s.begin <= t && t <= s.end; });
  };
  for (const auto& [id, s] : flow_start) {
    if (!flow_end.count(id)) {
      ADD_FAILURE() << "flow " << id << " never ends";
      continue;
    }
    const json& f = flow_end.at(id);
    EXPECT_EQ(s.at("cat"), f.at("cat"));
    EXPECT_NE(s.at("pid"), f.at("pid")) << "a message goes from one rank to another";
    EXPECT_LE(s.at("ts").get<double>(), f.at("ts").get<double>());
    EXPECT_TRUE(inside(s)) << s.dump();
    EXPECT_TRUE(inside(f)) << f.dump();
  }
  return slices;
}

int CountSends(const Schedule& s) {
  int n = 0;
  for (const auto& program : s.program) {
    for (const Action& a : program) n += IsSend(a.op);
  }
  return n;
}

TEST(PerfettoTrace, SimulationHasEveryActionPerRankAndStreamAndEveryMessage) {
  for (const char* model : {"nccl", "eager"}) {
    SCOPED_TRACE(model);
    const Schedule s = Generated("dualpipe", 4, 8);
    const CommModel m = *CommModelFromName(model);
    const json trace =
        json::parse(PerfettoTrace(SimulatedView(s, Simulate(s, m, Costs{}), Costs{}, m)));
    const auto slices = CheckTraceStructure(trace);
    for (int r = 0; r < s.ranks; ++r) {
      int computes = 0, overlaps = 0, comms = 0;
      for (const Action& a : s.program[r]) {
        computes += IsCompute(a.op);
        overlaps += a.op == Op::kOverlapFB;
        comms += !IsCompute(a.op);
      }
      // An OVERLAP_F_B is one event with its two parts nested in it.
      EXPECT_EQ(slices.at({r, 1}).size(), static_cast<size_t>(computes + 2 * overlaps))
          << "rank " << r;
      size_t comm_slices = 0;
      for (const auto& [track, list] : slices) {
        if (track.first == r && track.second >= 2) comm_slices += list.size();
      }
      EXPECT_EQ(comm_slices, static_cast<size_t>(comms)) << "rank " << r;
    }
    int flows = 0;
    for (const json& e : trace.at("traceEvents")) flows += e.at("ph") == "s";
    EXPECT_EQ(flows, CountSends(s));
    // One cost unit is one millisecond: the makespan of 30 units ends at 30000 us.
    double last = 0;
    for (const json& e : trace.at("traceEvents")) {
      if (e.at("ph") == "X")
        last = std::max(last, e.at("ts").get<double>() + e.at("dur").get<double>());
    }
    EXPECT_NEAR(last, Simulate(s, m, Costs{}).makespan * 1000, 0.02);
  }
}

RunOutcome RunRecorded(const Schedule& s) {
  RunOptions o;
  o.exec.model.shape = {8, 4, 2};
  o.exec.record_timeline = true;
  o.policy = ComparePolicy::Exact();
  o.faults = DrawFaultPlan(PlanRun(s), {}, {64, 52}, s.kind);
  o.watchdog.timeout_s = 20;
  auto world = MakeThreadWorld();
  return RunAndCompare(s, o, *world);
}

TEST(PerfettoTrace, RealRunHasEveryRanksActionsWithRealDurationsAndItsMessages) {
  for (const char* kind : {"dualpipe", "1f1b"}) {  // with WAIT groups, and with a stream per rank
    SCOPED_TRACE(kind);
    const Schedule s = Generated(kind, 4, 8);
    const RunOutcome out = RunRecorded(s);
    ASSERT_EQ(out.ExitCode(), 0) << out.Text();
    ASSERT_TRUE(out.timeline);
    const RunPlan plan = PlanRun(s);
    const json trace =
        json::parse(PerfettoTrace(RecordedView(s, *out.timeline, "", out.transport)));
    const auto slices = CheckTraceStructure(trace);
    std::map<std::pair<int, std::string>, int>
        compute_events;  // (rank, pass) -> X events of computes
    int flows = 0, units = 0;
    for (const json& e : trace.at("traceEvents")) {
      flows += e.at("ph") == "s";
      if (e.at("ph") != "X" || !e.at("args").contains("pass"))
        continue;  // OVERLAP_F_B parts carry no pass
      if (e.at("tid") == 1) {
        ++compute_events[{e.at("pid").get<int>(), e.at("args").at("pass").get<std::string>()}];
        EXPECT_GT(e.at("dur").get<double>(), 0) << "a compute takes real time";
      } else {
        ++units;
      }
    }
    int64_t expected_units = 0;
    for (int r = 0; r < s.ranks; ++r) {
      for (const PassPlan& pass : plan.passes) {
        int computes = 0;
        for (const Action& a : pass.schedule.program[r]) computes += IsCompute(a.op);
        EXPECT_EQ((compute_events[{r, std::string(PassName(pass.kind))}]), computes)
            << "rank " << r << " " << PassName(pass.kind);
        expected_units += static_cast<int64_t>(pass.ranks[r].units.size());
        EXPECT_EQ(slices.count({r, 2}), 1u) << "rank " << r << " has a communication track";
      }
    }
    EXPECT_EQ(units, expected_units);
    int sends = 0;
    for (const PassPlan& pass : plan.passes) sends += CountSends(pass.schedule);
    EXPECT_EQ(flows, sends) << "every message as a flow arrow";
    EXPECT_EQ(static_cast<int>(out.timeline->messages.size()), sends);
  }
}

TEST(RunTimeline, TravelsThroughTheReportJsonAndRankResults) {
  const Schedule s = Generated("dualpipe", 2, 4);
  const RunOutcome out = RunRecorded(s);
  ASSERT_TRUE(out.timeline);
  const RunTimeline back = RunTimeline::FromJson(out.timeline->Json());
  EXPECT_EQ(back.Json(), out.timeline->Json());
  std::string transport;
  const RunTimeline from_report = RunTimelineFromReport(out.Json(), &transport);
  EXPECT_EQ(from_report.spans.size(), out.timeline->spans.size());
  EXPECT_EQ(transport, "threads");
  // What MPI ranks send to rank 0 keeps the spans.
  ASSERT_FALSE(out.execution.ranks.empty());
  const RankResult& r = out.execution.ranks[0];
  EXPECT_FALSE(r.timeline.empty());
  const RankResult back_result = RankResult::Deserialize(r.Serialize());
  EXPECT_EQ(back_result.timeline, r.timeline);
  EXPECT_EQ(back_result.Serialize(), r.Serialize());
  EXPECT_THROW(RunTimelineFromReport("{\"status\": \"hang\"}", nullptr), std::runtime_error);
  EXPECT_THROW(RunTimeline::FromJson("{\"ranks\": 1, \"spans\": [{\"rank\": 3}]}"),
               std::runtime_error);
}

TEST(RunTimeline, NotRecordedUnlessAsked) {
  const Schedule s = Generated("1f1b", 2, 2);
  RunOptions o;
  o.exec.model.shape = {8, 4, 2};
  o.faults = DrawFaultPlan(PlanRun(s), {}, {64, 52}, s.kind);
  auto world = MakeThreadWorld();
  const RunOutcome out = RunAndCompare(s, o, *world);
  EXPECT_FALSE(out.timeline);
  for (const RankResult& r : out.execution.ranks) EXPECT_TRUE(r.timeline.empty());
  EXPECT_EQ(json::parse(out.Json()).count("timeline"), 0u);
}

}  // namespace
}  // namespace pipeproof
