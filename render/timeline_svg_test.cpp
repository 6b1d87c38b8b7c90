// The timeline picture read back as XML: well-formed, one cell per compute with the right kind,
// rank, chunk and microbatch, colours from the legend, bubbles left empty, the title's numbers,
// communication marks, and a deadlock's cycle.
#include "render/timeline_svg.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>

#include "render/xml_walk_test_util.h"
#include "verify/repair.h"
#include "schedule/formats.h"
#include "schedule/generate.h"

namespace pipeproof {
namespace {

using testing::ParseXml;
using testing::XmlElement;

Schedule Generated(const std::string& kind, int ranks, int microbatches) {
  return Generate({.kind = kind, .ranks = ranks, .microbatches = microbatches});
}

TimelineView Simulated(const Schedule& s, const Costs& costs = {}) {
  return SimulatedView(s, Simulate(s, CommModel::kNccl, costs), costs, CommModel::kNccl);
}

// Per (rank, kind): how many computes of that kind the schedule has.
std::map<std::pair<int, std::string>, int> ComputesByRankAndKind(const Schedule& s) {
  std::map<std::pair<int, std::string>, int> count;
  for (int r = 0; r < s.ranks; ++r) {
    for (const Action& a : s.program[r]) {
      if (IsCompute(a.op)) ++count[{r, std::string(CellKindName(a.op))}];
    }
  }
  return count;
}

// xmllint as a second opinion on well-formedness, where it is installed (libxml2-utils).
void ExpectXmllintAccepts(const std::string& svg) {
  if (std::system("command -v xmllint >/dev/null 2>&1") != 0) return;
  const std::string path =
      ::testing::TempDir() + "/pipeproof_svg_" + std::to_string(::getpid()) + ".svg";
  std::ofstream(path) << svg;
  EXPECT_EQ(std::system(("xmllint --noout " + path).c_str()), 0) << "xmllint rejects " << path;
  std::remove(path.c_str());
}

TEST(TimelineSvg, DualPipe8x20HasOneCellPerComputeOfEachKindOnItsRank) {
  const Schedule s = Generated("dualpipe", 8, 20);
  const std::string svg = TimelineSvg(Simulated(s));
  ExpectXmllintAccepts(svg);
  const auto doc = ParseXml(svg);
  std::map<std::pair<int, std::string>, int> drawn;
  for (const XmlElement* cell : doc->WithClass("cell")) {
    ++drawn[{std::stoi(cell->Attr("data-rank")), cell->Attr("data-kind")}];
  }
  EXPECT_EQ(drawn, ComputesByRankAndKind(s));
  EXPECT_GT((drawn[{0, "overlap-f-b"}]), 0);
  EXPECT_GT((drawn[{7, "weight-grad"}]), 0);
}

TEST(TimelineSvg, CellsCarryTheirMicrobatchAndDirection) {
  const Schedule s = Generated("dualpipe", 8, 20);
  const auto doc = ParseXml(TimelineSvg(Simulated(s)));
  int overlap = 0;
  for (const XmlElement* cell : doc->WithClass("cell")) {
    const int stage = std::stoi(cell->Attr("data-stage"));
    const std::string mb = cell->Attr("data-mb");
    // DualPipe's direction 0 is stages 0-7, direction 1 stages 8-15: the chunk tells them apart.
    EXPECT_EQ(cell->Attr("data-chunk"), stage < 8 ? "0" : "1");
    const auto texts = cell->Named("text");
    if (cell->Attr("data-kind") == "overlap-f-b") {
      ++overlap;
      ASSERT_EQ(texts.size(), 2u) << "both halves numbered";
      EXPECT_EQ(texts[0]->text, mb);
      EXPECT_EQ(texts[1]->text, cell->Attr("data-back-mb"));
      EXPECT_EQ(cell->WithClass("part-forward").size(), 1u);
      EXPECT_EQ(cell->WithClass("part-backward").size(), 1u);
    } else {
      ASSERT_EQ(texts.size(), 1u) << cell->AllText();
      EXPECT_EQ(texts[0]->text, mb);
    }
    EXPECT_NE(cell->Named("title").front()->text.find(std::to_string(std::stoi(mb))),
              std::string::npos);
  }
  EXPECT_GT(overlap, 0);
}

TEST(TimelineSvg, CellColoursAreTheLegendsAndTheDirectionsDiffer) {
  const Schedule s = Generated("dualpipe", 8, 20);
  const auto doc = ParseXml(TimelineSvg(Simulated(s)));
  std::map<std::pair<std::string, std::string>, std::vector<std::string>>
      legend;  // (kind, chunk) -> fills
  for (const XmlElement* item : doc->WithClass("legend-item")) {
    for (const XmlElement* rect : item->Named("rect")) {
      if (rect->Attr("fill") != "none")
        legend[{item->Attr("data-kind"), item->Attr("data-chunk")}].push_back(rect->Attr("fill"));
    }
  }
  for (const char* kind : {"forward", "backward", "input-grad", "weight-grad"}) {
    ASSERT_EQ((legend[{kind, "0"}].size()), 1u) << kind;
    ASSERT_EQ((legend[{kind, "1"}].size()), 1u) << kind;
    EXPECT_NE((legend[{kind, "0"}][0]), (legend[{kind, "1"}][0])) << "two directions, two shades";
  }
  std::set<std::string> all_fills;
  for (const auto& [key, fills] : legend) all_fills.insert(fills.begin(), fills.end());
  EXPECT_GE(all_fills.size(), 9u) << "four kinds in two shades, and the bubble";
  ASSERT_EQ((legend[{"overlap-f-b", "0"}].size()), 2u);
  for (const XmlElement* cell : doc->WithClass("cell")) {
    const std::string kind = cell->Attr("data-kind"), chunk = cell->Attr("data-chunk");
    if (kind == "overlap-f-b") {
      EXPECT_EQ(cell->WithClass("part-forward")[0]->Attr("fill"), (legend[{"forward", chunk}][0]));
      EXPECT_EQ(cell->WithClass("part-backward")[0]->Attr("fill"),
                (legend[{cell->Attr("data-back-kind"), cell->Attr("data-back-chunk")}][0]));
    } else {
      EXPECT_EQ(cell->Named("rect")[0]->Attr("fill"), (legend[{kind, chunk}][0]))
          << kind << " " << chunk;
    }
  }
}

TEST(TimelineSvg, TitleNamesKindSizeMakespanAndBubbleRatio) {
  const Schedule s = Generated("dualpipe", 8, 20);
  const auto doc = ParseXml(TimelineSvg(Simulated(s)));
  const std::string title = doc->WithClass("title").at(0)->text;
  const std::string subtitle = doc->WithClass("subtitle").at(0)->text;
  EXPECT_NE(title.find("dualpipe"), std::string::npos) << title;
  EXPECT_NE(title.find("8 ranks"), std::string::npos) << title;
  EXPECT_NE(title.find("20 microbatches"), std::string::npos) << title;
  EXPECT_NE(subtitle.find("makespan 66"), std::string::npos) << subtitle;
  EXPECT_NE(subtitle.find("bubble ratio 9.1%"), std::string::npos) << subtitle;
  const auto labels = doc->WithClass("rank-label");
  ASSERT_EQ(labels.size(), 8u);
  EXPECT_EQ(labels[7]->text, "Rank 7");
}

TEST(TimelineSvg, BubblesAreWhereNoCellIs) {
  // Costs where every rank idles: per rank, the cells cover exactly its busy time, and no two
  // cells of a rank overlap, so the rest of the row (its bubble) stays empty.
  const Schedule s = Generated("1f1b", 4, 8);
  const Costs costs = ParseCosts("F=1,B=2");
  const Timeline t = Simulate(s, CommModel::kNccl, costs);
  const auto doc = ParseXml(TimelineSvg(SimulatedView(s, t, costs, CommModel::kNccl)));
  std::map<int, std::vector<std::pair<double, double>>> spans;
  for (const XmlElement* cell : doc->WithClass("cell")) {
    spans[std::stoi(cell->Attr("data-rank"))].push_back(
        {cell->Number("data-start"), cell->Number("data-end")});
  }
  for (int r = 0; r < 4; ++r) {
    auto& list = spans[r];
    std::sort(list.begin(), list.end());
    double covered = 0;
    for (size_t k = 0; k < list.size(); ++k) {
      covered += list[k].second - list[k].first;
      if (k > 0) {
        EXPECT_LE(list[k - 1].second, list[k].first + 1e-9) << "rank " << r;
      }
    }
    EXPECT_NEAR(covered, t.busy[r], 1e-9);
    EXPECT_NEAR(t.makespan - covered, t.bubble[r], 1e-9);
    EXPECT_GT(t.bubble[r], 0);
  }
}

TEST(TimelineSvg, CommunicationMarksOnlyWhenAsked) {
  const Schedule s = Generated("dualpipe", 4, 8);
  const TimelineView view = Simulated(s);
  int comm = 0;
  for (const Action& a : s.program[0]) comm += !IsCompute(a.op);
  const auto plain = ParseXml(TimelineSvg(view));
  EXPECT_TRUE(plain->WithClass("comm").empty());
  SvgOptions options;
  options.show_comm = true;
  const auto marked = ParseXml(TimelineSvg(view, options));
  int rank0 = 0;
  std::set<std::string> kinds;
  for (const XmlElement* m : marked->WithClass("comm")) {
    rank0 += m->Attr("data-rank") == "0";
    kinds.insert(m->Attr("data-kind"));
  }
  EXPECT_EQ(rank0, comm) << "every SEND, RECV and WAIT of rank 0";
  EXPECT_EQ(kinds, (std::set<std::string>{"send", "recv", "wait"}));
  std::set<std::string> legend;
  for (const XmlElement* item : marked->WithClass("legend-item"))
    legend.insert(item->Attr("data-kind"));
  EXPECT_TRUE(legend.count("send") && legend.count("recv") && legend.count("wait"));
}

TEST(TimelineSvg, DeadlockShowsTheCycleOfBlockedActions) {
  const Schedule s =
      ReadScheduleFile(std::string(PIPEPROOF_TESTDATA_DIR) + "/verify/pytorch_172668.pps", {});
  VerifyOptions options;
  options.use_z3 = false;
  const VerifyReport report = Verify(s, options);
  ASSERT_EQ(report.cycle.size(), 4u);
  const TimelineView view = VerifiedView(s, report);
  SvgOptions svg_options;
  svg_options.show_comm = true;
  const std::string svg = TimelineSvg(view, svg_options);
  ExpectXmllintAccepts(svg);
  const auto doc = ParseXml(svg);
  std::map<int, const XmlElement*> by_step;
  for (const XmlElement* box : doc->WithClass("stuck"))
    by_step[std::stoi(box->Attr("data-cycle-step"))] = box;
  ASSERT_EQ(by_step.size(), 4u);
  for (int k = 0; k < 4; ++k) {
    ASSERT_TRUE(by_step.count(k)) << k;
    EXPECT_EQ(by_step[k]->Attr("data-rank"), std::to_string(report.cycle[k].rank));
    EXPECT_EQ(by_step[k]->Attr("data-index"), std::to_string(report.cycle[k].index));
    EXPECT_NE(by_step[k]->AllText().find(report.cycle[k].action), std::string::npos);
  }
  EXPECT_EQ(doc->WithClass("waits-for").size(), 4u)
      << "an arrow from each blocked action to the next";
  // Up to the stuck point: the computes that ran, none after it.
  for (const XmlElement* cell : doc->WithClass("cell"))
    EXPECT_LE(cell->Number("data-end"), view.stuck_at);
  EXPECT_EQ(doc->WithClass("cell").size(), 3u) << "0F0, 0F1 on rank 0 and 1F0 on rank 1";
  EXPECT_NE(doc->WithClass("title").at(0)->text.find("DEADLOCK"), std::string::npos);
}

// A diff against a schedule that deadlocks: the cycle's notes come first, and still the first 12
// edits are listed and the rest counted.
TEST(TimelineSvg, ADiffListsTwelveEditsBesideADeadlocksNotes) {
  const Schedule original = Generated("1f1b", 4, 24);
  Schedule edited = original;
  // Rank 0 receives each gradient before it sends the activation written just before it, ...
  std::vector<Action>& first = edited.program[0];
  for (size_t i = 0; i + 1 < first.size(); ++i) {
    if (first[i].op == Op::kSendF && first[i + 1].op == Op::kRecvB) std::swap(first[i], first[i + 1]);
  }
  // ... and the last rank sends a gradient before it receives an activation: it deadlocks.
  std::vector<Action>& last = edited.program.back();
  auto send = std::find_if(last.begin() + last.size() / 2, last.end(), [](const Action& a) { return a.op == Op::kSendB; });
  std::iter_swap(send, std::find_if(send, last.end(), [](const Action& a) { return a.op == Op::kRecvF; }));
  const TimelineView view = DiffView(original, edited, CommModel::kNccl, Costs{});
  ASSERT_FALSE(view.stuck.empty());
  const size_t edits = CommunicationDiff(original, edited).size();
  ASSERT_GT(edits, 12u);
  const auto listed = std::count_if(view.notes.begin(), view.notes.end(), [](const std::string& n) {
    return n.starts_with("rank ") && n.find(": move ") != std::string::npos;
  });
  EXPECT_EQ(listed, 12);
  EXPECT_NE(std::find(view.notes.begin(), view.notes.end(), fmt::format("... and {} more", edits - 12)),
            view.notes.end());
}

TEST(TimelineSvg, TextIsEscaped) {
  const Schedule s = Generated("gpipe", 2, 2);
  TimelineView view = Simulated(s);
  view.title = "a <b> & \"c\"";
  const auto doc = ParseXml(TimelineSvg(view));
  EXPECT_EQ(doc->WithClass("title").at(0)->text, "a <b> & \"c\"");
}

}  // namespace
}  // namespace pipeproof
