// Property suite 5: every format round-trips.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <fmt/format.h>

#include <set>

#include "fuzz/schedule_gen.h"
#include "schedule/formats.h"

namespace pipeproof {
namespace {

RC_GTEST_PROP(FormatProperties, GeneratedSchedulesRoundTripInEveryFormat, ()) {
  const GenerateOptions options = *GenValidOptions(8, 4);
  const Schedule s = Generate(options);
  RC_ASSERT(ParsePps(WritePps(s), "x.pps") == s);
  RC_ASSERT(ParseJson(WriteJson(s), "x.json") == s);
  TopologyOptions topology;
  topology.kind = s.kind;
  RC_ASSERT(ParseCsv(WriteCsv(s, false), "x.csv", topology) == s);
  RC_ASSERT(ParseCsv(WriteCsv(s, true), "x.csv", topology) == ComputeOnly(s));
}

RC_GTEST_PROP(FormatProperties, ArbitrarySchedulesRoundTripThroughPpsAndJson, ()) {
  const Schedule s = *GenArbitrarySchedule();
  RC_ASSERT(ParsePps(WritePps(s), "x.pps") == s);
  RC_ASSERT(ParseJson(WriteJson(s), "x.json") == s);
}

RC_GTEST_PROP(FormatProperties, CsvRoundTripsGivenItsTopology, ()) {
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

}  // namespace
}  // namespace pipeproof
