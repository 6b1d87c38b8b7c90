// The HTML mismatch report in a real browser: headless Chromium (Debian's `chromium`) loads the
// page from disk, lays it out and paints it. A copy of the page gets a script (the report itself
// has none) that measures what was laid out; --dump-dom prints the document after it ran.
// CTest label `browser`; skipped where chromium is not installed.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <regex>

#include "cli/command_test_util.h"

namespace pipeproof {
namespace {

using testing::ReadWhole;
using testing::RunCommand;
using testing::RunPipeproof;
using testing::ScratchPath;

constexpr const char* kMeasure = R"(<script>
window.addEventListener('load', () => {
  const rows = document.querySelectorAll('#tensors tbody tr');
  const suspects = document.querySelectorAll('#tensors tr.suspect');
  const maps = [...document.querySelectorAll('svg.heatmap-grid')];
  const blocks = document.querySelectorAll('svg.heatmap-grid rect.block');
  const headline = document.getElementById('headline');
  const table = document.getElementById('tensors').getBoundingClientRect();
  const firstMap = maps.length ? maps[0].getBoundingClientRect() : {width: 0, height: 0};
  const result = {
    rows: rows.length,
    suspects: suspects.length,
    maps: maps.length,
    blocks: blocks.length,
    tableWidth: Math.round(table.width),
    mapWidth: Math.round(firstMap.width),
    mapHeight: Math.round(firstMap.height),
    suspectBackground: suspects.length ? getComputedStyle(suspects[0].cells[0]).backgroundColor : '',
    headlineColor: getComputedStyle(headline).color,
  };
  document.body.setAttribute('data-measured', JSON.stringify(result));
});
</script>)";

int Field(const std::string& json, const std::string& key) {
  std::smatch m;
  if (!std::regex_search(json, m, std::regex("&quot;" + key + "&quot;:(\\d+)"))) return -1;
  return std::stoi(m[1]);
}

TEST(HtmlReportInBrowser, ChromiumRendersTheNegativeControlsReport) {
  if (RunCommand("command -v chromium").status != 0) GTEST_SKIP() << "chromium is not installed";
  const std::string html = ScratchPath("report.html");
  const auto run =
      RunPipeproof("run --kind dualpipe -r 4 -m 8 --corrupt bitflip --seed 3 -q --html " + html);
  ASSERT_EQ(run.status, 1) << run.out << run.err;
  std::string page = ReadWhole(html);
  const size_t body_end = page.rfind("</body>");
  ASSERT_NE(body_end, std::string::npos);
  page.insert(body_end, kMeasure);
  const std::string measured_page = ScratchPath("measured.html");
  std::ofstream(measured_page) << page;

  const std::string profile = ScratchPath("chromium-profile");
  const std::string chromium =
      "chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage "
      "--user-data-dir=" +
      profile + " --window-size=1400,2000 ";
  const auto dom =
      RunCommand(chromium + "--virtual-time-budget=3000 --dump-dom file://" + measured_page);
  ASSERT_EQ(dom.status, 0) << dom.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(dom.out, m, std::regex("data-measured=\"([^\"]*)\"")))
      << dom.out.substr(0, 2000);
  const std::string measured = m[1];
  EXPECT_EQ(Field(measured, "rows"), 17) << measured;     // every tensor of the run
  EXPECT_EQ(Field(measured, "suspects"), 2) << measured;  // block 2's two gradients
  EXPECT_EQ(Field(measured, "maps"), 9) << measured;      // one per mismatching tensor
  EXPECT_GT(Field(measured, "blocks"), 1000) << measured;
  EXPECT_GT(Field(measured, "tableWidth"), 600) << measured;
  EXPECT_GT(Field(measured, "mapWidth"), 100) << measured;
  EXPECT_GT(Field(measured, "mapHeight"), 100) << measured;
  EXPECT_NE(measured.find("rgb(255, 217, 217)"), std::string::npos)
      << "suspect rows painted red: " << measured;
  EXPECT_NE(measured.find("rgb(142, 16, 16)"), std::string::npos)
      << "a mismatch headline in dark red: " << measured;

  // And it paints: a screenshot of the report as it is.
  const std::string shot = ScratchPath("report.png");
  const auto screenshot = RunCommand(chromium + "--screenshot=" + shot + " file://" + html);
  ASSERT_EQ(screenshot.status, 0) << screenshot.err;
  const std::string png = ReadWhole(shot);
  EXPECT_EQ(png.substr(0, 8), "\x89PNG\r\n\x1a\n");
  EXPECT_GT(png.size(), 50000u) << "a page of tables and heatmaps, not a blank one";
  RunCommand("rm -rf " + profile);
  std::remove(shot.c_str());
  std::remove(measured_page.c_str());
  std::remove(html.c_str());
}

}  // namespace
}  // namespace pipeproof
