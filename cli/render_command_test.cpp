// The pictures through the binary, as users make them: render (SVG, PNG, from a recorded run),
// simulate and run --trace, run --html of a negative control, verify --svg of a deadlock.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/command_test_util.h"
#include "render/xml_walk_test_util.h"
#include "schedule/formats.h"

namespace pipeproof {
namespace {

using testing::ParseXml;
using testing::ReadWhole;
using testing::RunCommand;
using testing::RunPipeproof;
using testing::ScratchPath;

const std::string kDeadlock = std::string(PIPEPROOF_TESTDATA_DIR) + "/verify/pytorch_172668.pps";

std::string Generated(const std::string& args, const std::string& name) {
  const std::string path = ScratchPath(name);
  const auto r = RunPipeproof("generate " + args + " -o " + path);
  EXPECT_EQ(r.status, 0) << r.err;
  return path;
}

TEST(RenderCommand, DrawsDualPipeAsSvgAndPng) {
  const std::string pps = Generated("dualpipe -r 8 -m 20", "dp.pps");
  const std::string svg = ScratchPath("dp.svg");
  auto r = RunPipeproof("render " + pps + " -o " + svg);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto doc = ParseXml(ReadWhole(svg));
  EXPECT_EQ(doc->WithClass("rank-label").size(), 8u);
  EXPECT_NE(doc->WithClass("subtitle").at(0)->text.find("makespan 66"), std::string::npos);
  if (RunCommand("rsvg-convert --version").status != 0)
    GTEST_SKIP() << "no rsvg-convert (librsvg2-bin)";
  const std::string png = ScratchPath("dp.png");
  r = RunPipeproof("render " + pps + " -o " + png);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(ReadWhole(png).substr(0, 8), "\x89PNG\r\n\x1a\n");
  std::remove(svg.c_str());
  std::remove(png.c_str());
  std::remove(pps.c_str());
}

// render --diff ORIGINAL REPAIRED: repair's edits outlined where the ops now stand, each listed;
// a file whose computes differ from the original's is refused.
TEST(RenderCommand, DiffOutlinesTheEditsOfARepair) {
  const std::string repaired = ScratchPath("repaired-172668.pps");
  auto r = RunPipeproof("repair " + kDeadlock + " --json -o " + repaired);
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json edits = nlohmann::json::parse(r.out)["edits"];
  ASSERT_FALSE(edits.empty());
  const std::string svg = ScratchPath("diff.svg");
  r = RunPipeproof("render --diff " + kDeadlock + " " + repaired + " -o " + svg);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto doc = ParseXml(ReadWhole(svg));
  const auto outlined = doc->WithClass("edit");
  ASSERT_EQ(outlined.size(), edits.size());
  for (size_t k = 0; k < edits.size(); ++k) {
    EXPECT_EQ(outlined[k]->attrs.at("data-rank"), std::to_string(edits[k]["rank"].get<int>()));
    EXPECT_EQ(outlined[k]->attrs.at("data-index"), std::to_string(edits[k]["to"].get<int>()));
  }
  EXPECT_EQ(RunPipeproof("render --diff " + Generated("1f1b -r 2 -m 4", "other.pps") + " " + repaired +
                         " -o " + svg)
                .status,
            2);
}

TEST(RenderCommand, RefusesOtherExtensionsAndReportsWithoutTimeline) {
  const std::string pps = Generated("1f1b -r 2 -m 2", "f.pps");
  auto r = RunPipeproof("render " + pps + " -o " + ScratchPath("x.gif"));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find(".svg or .png"), std::string::npos) << r.err;
  const std::string report = ScratchPath("empty.json");
  std::ofstream(report) << "{\"status\": \"hang\"}";
  r = RunPipeproof("render " + pps + " --from-run " + report + " -o " + ScratchPath("x.svg"));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("no recorded timeline"), std::string::npos) << r.err;
}

TEST(RenderCommand, RunReportTraceAndPictureOfTheRealRun) {
  const std::string pps = Generated("dualpipe -r 4 -m 8", "run.pps");
  const std::string report = ScratchPath("run.json"), trace = ScratchPath("trace.json");
  auto r = RunPipeproof("run " + pps + " -q --report " + report + " --trace " + trace);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const nlohmann::json t = nlohmann::json::parse(ReadWhole(trace));
  int computes = 0, flows = 0;
  for (const auto& e : t.at("traceEvents")) {
    computes += e.at("ph") == "X" && e.at("tid") == 1 && e.at("args").contains("pass");
    flows += e.at("ph") == "f";
  }
  EXPECT_GT(computes, 0);
  EXPECT_GT(flows, 0);
  EXPECT_TRUE(nlohmann::json::parse(ReadWhole(report)).contains("timeline"));
  const std::string svg = ScratchPath("run.svg");
  r = RunPipeproof("render " + pps + " --from-run " + report + " -o " + svg);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto doc = ParseXml(ReadWhole(svg));
  // The train pass: every compute of the schedule, once.
  int expected = 0;
  for (const auto& program : ReadScheduleFile(pps).program) {
    for (const Action& a : program) expected += IsCompute(a.op);
  }
  EXPECT_EQ(static_cast<int>(doc->WithClass("cell").size()), expected);
  EXPECT_NE(doc->WithClass("subtitle").at(0)->text.find("as it ran on threads"), std::string::npos);
  // Another schedule with as many ranks is refused, not drawn with this run's times.
  const std::string other = Generated("dualpipev -r 4 -m 8", "other.pps");
  r = RunPipeproof("render " + other + " --from-run " + report + " -o " + ScratchPath("other.svg"));
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("the recorded run is not of this schedule"), std::string::npos) << r.err;
}

TEST(RenderCommand, SimulateWritesATrace) {
  const std::string pps = Generated("zb1p -r 4 -m 8", "zb.pps");
  const std::string trace = ScratchPath("sim.json");
  const auto r = RunPipeproof("simulate " + pps + " --trace " + trace);
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json t = nlohmann::json::parse(ReadWhole(trace));
  int names = 0;
  for (const auto& e : t.at("traceEvents"))
    names += e.at("ph") == "M" && e.at("name") == "process_name";
  EXPECT_EQ(names, 4);
}

TEST(RenderCommand, VerifySvgOfADeadlockHighlightsItsCycle) {
  const std::string svg = ScratchPath("deadlock.svg");
  const auto r = RunPipeproof("verify " + kDeadlock + " --svg " + svg);
  EXPECT_EQ(r.status, 1);
  const auto doc = ParseXml(ReadWhole(svg));
  int on_cycle = 0;
  for (const auto* box : doc->WithClass("stuck")) on_cycle += box->Attr("data-cycle-step") != "-1";
  EXPECT_EQ(on_cycle, 4);
  EXPECT_EQ(doc->WithClass("waits-for").size(), 4u);
  // render draws the same picture and says so by its exit status, and on stderr.
  const auto rendered = RunPipeproof("render " + kDeadlock + " -o " + ScratchPath("deadlock2.svg"));
  EXPECT_EQ(rendered.status, 1);
  EXPECT_NE(rendered.err.find("the schedule deadlocks (4 actions blocked)"), std::string::npos)
      << rendered.err;
}

TEST(RenderCommand, NegativeControlHtmlPointsAtTheCorruptedBlock) {
  const std::string html = ScratchPath("bitflip.html");
  const auto r =
      RunPipeproof("run --kind dualpipe -r 4 -m 8 --corrupt bitflip --seed 3 -q --html " + html);
  ASSERT_EQ(r.status, 1) << r.out << r.err;
  const std::string page = ReadWhole(html);
  // Seed 3 flips a bit of message #2 from rank 2 to rank 1: stage 5's output, stage 6's input;
  // stage 6 holds parameter block 2.
  EXPECT_NE(page.find("enters stage 6 on rank 1, which holds parameter block 2"),
            std::string::npos);
  EXPECT_NE(page.find("<tr class=\"bad suspect\" data-name=\"block 2 linear1.weight.grad\">"),
            std::string::npos);
  EXPECT_NE(page.find("<tr class=\"bad suspect\" data-name=\"block 2 linear2.weight.grad\">"),
            std::string::npos);
}

TEST(RenderCommand, ShortWorkPrintsNoProgress) {
  const auto r = RunCommand(std::string("PIPEPROOF_PROGRESS=plain ") + PIPEPROOF_BINARY +
                            " verify " + kDeadlock);
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "");
}

}  // namespace
}  // namespace pipeproof
