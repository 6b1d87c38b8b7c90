// The mismatch report as a self-contained HTML page (no scripts, no external files), so that a
// report can be attached to a bug or opened from CI artifacts. `pipeproof diff --html` writes it.
// This is the one place the report becomes HTML: the HTML report of `pipeproof run` (issue 7)
// is to replace the body of MismatchReportHtml, and every caller then gets it.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "reference/mismatch_report.h"

namespace pipeproof {

struct HtmlPage {
  std::string title;
  std::vector<std::pair<std::string, std::string>> facts;  // shown above the table: what was compared
  std::vector<std::string> notes;
};

std::string MismatchReportHtml(const MismatchReport& report, const HtmlPage& page);

// `text` with &, <, >, " and ' escaped.
std::string HtmlEscape(const std::string& text);

}  // namespace pipeproof
