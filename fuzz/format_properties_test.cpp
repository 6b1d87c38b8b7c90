// Property suite 5: every format round-trips: schedules through .pps, JSON and CSV, and fault
// plans through their JSON.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "exec/fault_plan.h"
#include "fuzz/property.h"
#include "fuzz/schedule_gen.h"
#include "schedule/formats.h"

namespace pipeproof {
namespace {

PIPEPROOF_PROPERTY(FormatProperties, GeneratedSchedulesRoundTripInEveryFormat, ()) {
  const GenerateOptions options = *GenValidOptions(8, 4);
  const Schedule s = Generate(options);
  RC_ASSERT(ParsePps(WritePps(s), "x.pps") == s);
  RC_ASSERT(ParseJson(WriteJson(s), "x.json") == s);
  TopologyOptions topology;
  topology.kind = s.kind;
  RC_ASSERT(ParseCsv(WriteCsv(s, false), "x.csv", topology) == s);
  RC_ASSERT(ParseCsv(WriteCsv(s, true), "x.csv", topology) == ComputeOnly(s));
}

PIPEPROOF_PROPERTY(FormatProperties, ArbitrarySchedulesRoundTripThroughPpsAndJson, ()) {
  const Schedule s = *GenArbitrarySchedule();
  RC_ASSERT(ParsePps(WritePps(s), "x.pps") == s);
  RC_ASSERT(ParseJson(WriteJson(s), "x.json") == s);
}

PIPEPROOF_PROPERTY(FormatProperties, CsvRoundTripsGivenItsTopology, ()) {
  Schedule s = *GenArbitrarySchedule();
  s.kind.clear();
  s.params.clear();
  s.routes.clear();
  CompleteTopology(s);  // CSV carries no params or routes: the defaults
  TopologyOptions topology;
  topology.stages = s.stages;
  topology.microbatches = s.microbatches;
  topology.placement = fmt::format("{}", fmt::join(s.placement, ","));
  // CSV cannot tell "B, later W" from PyTorch's legacy I/W spelling and refuses it (see
  // testdata/peers/pytorch/README.md), so such programs are outside this property.
  for (const auto& actions : s.program) {
    std::set<std::pair<int, int>> full_backward;
    for (const Action& a : actions) {
      if (a.op == Op::kBackward) full_backward.insert({a.stage, a.microbatch});
      RC_PRE(!(a.op == Op::kWeightGrad && full_backward.count({a.stage, a.microbatch})));
    }
  }
  RC_ASSERT(ParseCsv(WriteCsv(s, false), "x.csv", topology) == s);
}

// Text as people and file names write it: ASCII and a few multi-byte characters.
rc::Gen<std::string> GenName() {
  return rc::gen::container<std::string>(rc::gen::elementOf(std::string("ab z:._/-,\\\"\n\t9")));
}

rc::Gen<std::vector<uint32_t>> GenDelays() {
  return rc::gen::container<std::vector<uint32_t>>(
      rc::gen::oneOf(rc::gen::just<uint32_t>(0), rc::gen::inRange<uint32_t>(0, 3600u * 1000 * 1000)));
}

rc::Gen<FaultPlan> GenFaultPlan() {
  return rc::gen::exec([] {
    FaultPlan p;
    p.seed = *rc::gen::arbitrary<uint64_t>();
    p.drawn_with = *GenName() + (*rc::gen::arbitrary<bool>() ? "\u00e9\u2192" : "");
    p.poison = *rc::gen::arbitrary<bool>();
    const int ranks = *rc::gen::inRange(0, 5);
    for (int r = 0; r < ranks; ++r) {
      RankFaults f;
      f.post_delay_us = *GenDelays();
      f.deliver_delay_us = *GenDelays();
      f.compute_delay_us = *GenDelays();
      f.straggler = *rc::gen::element(1.0, 1.5, 2.0 / 3.0 + 1, 999.999);
      if (*rc::gen::arbitrary<bool>()) {
        std::vector<int> order(*rc::gen::inRange(0, 6));
        std::iota(order.begin(), order.end(), 0);
        std::reverse(order.begin(), order.end());
        f.unit_orders.push_back({*rc::gen::inRange<int64_t>(0, 1000), order});
      }
      p.ranks.push_back(f);
    }
    if (*rc::gen::arbitrary<bool>()) {
      Corruption c;
      c.kind = *rc::gen::element(CorruptKind::kBitflip, CorruptKind::kSwap, CorruptKind::kDrop);
      c.message = {*rc::gen::inRange(0, 64), *rc::gen::inRange(0, 64), *rc::gen::inRange<int64_t>(0, 1 << 20)};
      if (c.kind == CorruptKind::kBitflip) {
        c.element = *rc::gen::inRange<int64_t>(0, int64_t{1} << 40);
        c.bit = *rc::gen::inRange(0, 64);
      }
      p.corrupt = c;
    }
    if (*rc::gen::arbitrary<bool>()) p.kill = Kill{*rc::gen::inRange(0, 64), *rc::gen::inRange<int64_t>(0, 1 << 20)};
    if (*rc::gen::arbitrary<bool>()) {
      PlanTarget t;
      t.schedule = *GenName();
      t.comms = *rc::gen::container<std::vector<int64_t>>(rc::gen::inRange<int64_t>(0, 1 << 20));
      t.computes = *rc::gen::container<std::vector<int64_t>>(t.comms.size(), rc::gen::inRange<int64_t>(0, 1 << 20));
      t.units = *rc::gen::container<std::vector<int64_t>>(t.comms.size(), rc::gen::inRange<int64_t>(0, 1 << 20));
      p.target = t;
    }
    return p;
  });
}

PIPEPROOF_PROPERTY(FormatProperties, FaultPlansRoundTripThroughJson, ()) {
  const FaultPlan plan = *GenFaultPlan();
  RC_ASSERT(ParseFaultPlan(plan.Json(), "x.json") == plan);
}

// A name that is not UTF-8 (a file name can be anything) must not stop a plan from being written;
// it reads back with U+FFFD in place of the bad bytes.
PIPEPROOF_PROPERTY(FormatProperties, FaultPlansWithAnyNameCanBeWritten, ()) {
  FaultPlan plan = *GenFaultPlan();
  plan.drawn_with = *rc::gen::arbitrary<std::string>();
  const FaultPlan back = ParseFaultPlan(plan.Json(), "x.json");
  RC_ASSERT(back.ranks == plan.ranks);
  RC_ASSERT(back.seed == plan.seed);
}

}  // namespace
}  // namespace pipeproof
