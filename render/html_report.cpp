#include "render/html_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <set>

#include "render/svg_text.h"

namespace pipeproof {
namespace {

using render_internal::Escape;
using render_internal::Num;

// Whether element i mismatches: the rule of CompareTensors (reference/mismatch_report.cpp),
// restated here per element; heatmap_test checks that the counts agree with the report's.
bool Mismatch(const HostTensor& run, const HostTensor& ref, int64_t i, const ComparePolicy& policy,
              double atol) {
  const double x = run.At(i), y = ref.At(i);
  if (policy.mode == ComparePolicy::Mode::kExact) {
    return run.dtype == ref.dtype ? run.BitsAt(i) != ref.BitsAt(i)
                                  : !(x == y || (std::isnan(x) && std::isnan(y)));
  }
  const bool nan = std::isnan(x) || std::isnan(y);
  return nan || !(std::abs(x - y) <= atol + policy.rtol * std::abs(y) || x == y);
}

// Error colours, per tensor: from pale yellow (kDecades decades below the tensor's largest error,
// or less) to dark red (its largest error), on a log scale. Per tensor, because the question a
// heatmap answers is where in the tensor the errors concentrate; the table gives the magnitudes.
constexpr double kDecades = 6;
constexpr std::array<std::array<double, 3>, 3> kRamp = {
    {{255, 243, 176}, {247, 148, 52}, {160, 10, 10}}};

std::string RampColour(double t) {
  t = std::clamp(t, 0.0, 1.0);
  const double pos = t * (kRamp.size() - 1);
  const size_t k = std::min<size_t>(static_cast<size_t>(pos), kRamp.size() - 2);
  const double f = pos - k;
  std::array<int, 3> c{};
  for (int i = 0; i < 3; ++i)
    c[i] = static_cast<int>(std::lround(kRamp[k][i] + f * (kRamp[k + 1][i] - kRamp[k][i])));
  return fmt::format("#{:02X}{:02X}{:02X}", c[0], c[1], c[2]);
}

// The colour of a block whose largest error is `err`, the tensor's largest being `top`.
std::string BlockColour(double err, int64_t mismatches, double top) {
  if (std::isnan(err)) return "#5E1A7A";               // a NaN
  if (mismatches == 0) return "#E6E6E6";               // differs, but within the tolerance
  if (!(err > 0) || !(top > 0)) return RampColour(0);  // bits differ, values equal (+0 and -0)
  return RampColour(1 + std::log10(err / top) / kDecades);
}

// The largest finite block error of a heatmap.
double TopError(const ErrorHeatmap& map) {
  double top = 0;
  for (double e : map.max_abs) {
    if (std::isfinite(e)) top = std::max(top, e);
  }
  return top;
}

std::string Sci(double x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  return fmt::format("{:.3g}", x);
}

constexpr std::string_view kStyle = R"(
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 24px 32px; color: #1b1b1b; }
h1 { font-size: 22px; margin: 0 0 8px 0; }
h2 { font-size: 17px; margin: 26px 0 8px 0; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.headline { font-size: 16px; font-weight: bold; padding: 8px 12px; border-radius: 4px; display: inline-block; }
.headline.bad { background: #FDE2E2; color: #8E1010; border: 1px solid #E99; }
.headline.good { background: #E3F6E3; color: #1D6B1D; border: 1px solid #9C9; }
table { border-collapse: collapse; font-size: 13px; }
table.facts td { padding: 2px 12px 2px 0; vertical-align: top; }
table.facts td:first-child { color: #555; white-space: nowrap; }
table.tensors th, table.tensors td { border: 1px solid #d0d0d0; padding: 3px 7px; text-align: right; }
table.tensors th { background: #f2f2f2; position: sticky; top: 0; }
table.tensors td.name, table.tensors td.note { text-align: left; }
table.tensors tr.bad td { background: #FFF1F1; }
table.tensors tr.ok td { color: #4a7a4a; }
table.tensors tr.suspect td { background: #FFD9D9; font-weight: bold; }
.suspect-note { margin: 12px 0; padding: 8px 12px; border-left: 5px solid #C62828; background: #FFF4F4; font-size: 14px; }
.mark { color: #C62828; }
.maps { display: flex; flex-wrap: wrap; gap: 18px; }
figure.heatmap { margin: 0; padding: 8px; border: 1px solid #ddd; border-radius: 4px; }
figure.heatmap.suspect { border: 2px solid #C62828; }
figure.heatmap figcaption { font-size: 12px; margin-bottom: 6px; max-width: 420px; }
pre.details { background: #f7f7f7; padding: 10px; font-size: 12px; overflow-x: auto; }
.scale { font-size: 12px; color: #444; }
)";

std::string FactsTable(const HtmlReportContext& context) {
  std::string out = "<table class=\"facts\">\n";
  for (const auto& [key, value] : context.facts) {
    out += fmt::format("<tr><td>{}</td><td>{}</td></tr>\n", Escape(key), Escape(value));
  }
  return out + "</table>\n";
}

std::string TensorRow(const TensorComparison& t, bool suspect) {
  std::string first = "&#8212;";
  if (t.first_index >= 0) {
    first = fmt::format("{} run {} ref {}", Escape(t.FirstPosition()), Sci(t.first_run),
                        Sci(t.first_ref));
  }
  const std::string shape =
      t.shape_problem.empty() ? fmt::format("{}x{}", t.rows, t.cols) : Escape(t.shape_problem);
  return fmt::format(
      "<tr class=\"{}{}\" data-name=\"{}\"><td class=\"name\">{}{}</td><td "
      "class=\"note\">{}</td><td>{}</td>"
      "<td>{} of {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td "
      "class=\"note\">{}</td></tr>\n",
      t.ok() ? "ok" : "bad", suspect ? " suspect" : "", Escape(t.name),
      suspect ? "<span class=\"mark\">&#9670;</span> " : "", Escape(t.name), Escape(t.note), shape,
      t.mismatches, t.count, Sci(t.max_abs), Sci(t.max_rel),
      t.max_ulp ? std::to_string(*t.max_ulp) : "&#8212;", Sci(t.cosine), first);
}

// One heatmap as inline SVG: a block per cell of the grid, the first mismatch outlined.
std::string HeatmapSvg(const ErrorHeatmap& map) {
  const int longest = std::max(map.grid_rows, map.grid_cols);
  const double px = std::clamp(std::floor(384.0 / std::max(longest, 1)), 4.0, 16.0);
  const double left = 4, top = 4;
  const double w = map.grid_cols * px, h = map.grid_rows * px;
  const double top_error = TopError(map);
  std::string out = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"heatmap-grid\" width=\"{}\" height=\"{}\" "
      "data-grid-rows=\"{}\" data-grid-cols=\"{}\">\n<rect x=\"{}\" y=\"{}\" width=\"{}\" "
      "height=\"{}\" fill=\"#FFFFFF\"/>\n",
      Num(w + 2 * left), Num(h + 2 * top), map.grid_rows, map.grid_cols, Num(left), Num(top),
      Num(w), Num(h));
  for (int gr = 0; gr < map.grid_rows; ++gr) {
    for (int gc = 0; gc < map.grid_cols; ++gc) {
      const size_t k = static_cast<size_t>(gr) * map.grid_cols + gc;
      const double err = map.max_abs[k];
      if (map.mismatches[k] == 0 && !(err > 0)) continue;  // equal: stays white
      const int r0 = gr * map.cell_rows, c0 = gc * map.cell_cols;
      const int r1 = std::min(map.rows, r0 + map.cell_rows) - 1,
                c1 = std::min(map.cols, c0 + map.cell_cols) - 1;
      const int64_t elements = int64_t{r1 - r0 + 1} * (c1 - c0 + 1);
      out += fmt::format(
          "<rect class=\"block\" data-mismatches=\"{}\" x=\"{}\" y=\"{}\" width=\"{}\" "
          "height=\"{}\" fill=\"{}\">"
          "<title>rows {}-{}, columns {}-{}: {} of {} differ, max abs {}</title></rect>\n",
          map.mismatches[k], Num(left + gc * px), Num(top + gr * px), Num(px), Num(px),
          BlockColour(err, map.mismatches[k], top_error), r0, r1, c0, c1, map.mismatches[k],
          elements, Sci(err));
    }
  }
  if (map.first_index >= 0 && map.cols > 0) {
    const int64_t row = map.first_index / map.cols, col = map.first_index % map.cols;
    out += fmt::format(
        "<rect class=\"first\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" "
        "stroke=\"#000000\" "
        "stroke-width=\"2\"><title>the first mismatching element [{},{}]</title></rect>\n",
        Num(left + (col / map.cell_cols) * px), Num(top + (row / map.cell_rows) * px), Num(px),
        Num(px), row, col);
  }
  out += fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#888888\"/>\n",
      Num(left), Num(top), Num(w), Num(h));
  return out + "</svg>\n";
}

std::string ScaleBar() {
  std::string out =
      "<p class=\"scale\">Each block shows the largest |run &#8722; ref| among its elements, on a "
      "log scale "
      "relative to the tensor's largest error (given in its caption): <svg "
      "xmlns=\"http://www.w3.org/2000/svg\" width=\"330\" height=\"16\" "
      "style=\"vertical-align: middle\">";
  const int steps = 32;
  for (int i = 0; i < steps; ++i) {
    out += fmt::format("<rect x=\"{}\" y=\"2\" width=\"{}\" height=\"12\" fill=\"{}\"/>",
                       Num(40 + i * 8.0), 8, RampColour(static_cast<double>(i) / (steps - 1)));
  }
  out += fmt::format(
      "<text x=\"36\" y=\"13\" font-size=\"11\" text-anchor=\"end\">1e-{:g}</text><text x=\"300\" "
      "y=\"13\" "
      "font-size=\"11\">&#215;1</text></svg> (and below); white: equal; grey: differs within the "
      "tolerance; purple: NaN; the "
      "outlined block holds the first mismatching element.</p>\n",
      kDecades);
  return out;
}

}  // namespace

int64_t ErrorHeatmap::TotalMismatches() const {
  int64_t n = 0;
  for (int64_t m : mismatches) n += m;
  return n;
}

ErrorHeatmap ComputeHeatmap(std::string name, const HostTensor& run, const HostTensor& ref,
                            const ComparePolicy& policy, int max_grid_rows, int max_grid_cols) {
  ErrorHeatmap map;
  map.name = std::move(name);
  if (run.rows != ref.rows || run.cols != ref.cols || ref.size() == 0) return map;
  map.rows = ref.rows;
  map.cols = ref.cols;
  // Blocks of whole elements: as many as fit, the same size each.
  map.cell_rows = (map.rows + max_grid_rows - 1) / std::max(max_grid_rows, 1);
  map.cell_cols = (map.cols + max_grid_cols - 1) / std::max(max_grid_cols, 1);
  map.grid_rows = (map.rows + map.cell_rows - 1) / map.cell_rows;
  map.grid_cols = (map.cols + map.cell_cols - 1) / map.cell_cols;
  const size_t blocks = static_cast<size_t>(map.grid_rows) * map.grid_cols;
  map.max_abs.assign(blocks, 0.0);
  map.mismatches.assign(blocks, 0);
  for (int64_t i = 0; i < ref.size(); ++i) {
    if (std::isfinite(ref.At(i))) map.scale = std::max(map.scale, std::abs(ref.At(i)));
  }
  const double atol = policy.mode == ComparePolicy::Mode::kExact ? 0 : policy.atol * map.scale;
  for (int64_t i = 0; i < ref.size(); ++i) {
    const int row = static_cast<int>(i / map.cols), col = static_cast<int>(i % map.cols);
    const size_t k = static_cast<size_t>(row / map.cell_rows) * map.grid_cols + col / map.cell_cols;
    const double x = run.At(i), y = ref.At(i);
    const double diff = std::isnan(x) != std::isnan(y) ? std::numeric_limits<double>::quiet_NaN()
                        : std::isnan(x)                ? 0.0
                                                       : std::abs(x - y);
    if (std::isnan(diff) || std::isnan(map.max_abs[k])) {
      map.max_abs[k] = std::numeric_limits<double>::quiet_NaN();
    } else if (x != y) {
      map.max_abs[k] = std::max(map.max_abs[k], diff);
    }
    if (Mismatch(run, ref, i, policy, atol)) {
      ++map.mismatches[k];
      if (map.first_index < 0) map.first_index = i;
    }
  }
  return map;
}

std::string MismatchHtml(const MismatchReport& report, const std::vector<ErrorHeatmap>& heatmaps,
                         const HtmlReportContext& context) {
  const std::set<std::string> suspects(context.suspects.begin(), context.suspects.end());
  std::string out = fmt::format(
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta "
      "charset=\"utf-8\">\n<title>{}</title>\n<style>{}</style>\n"
      "</head>\n<body>\n<h1>{}</h1>\n",
      Escape(context.title), kStyle, Escape(context.title));
  const bool ok = report.ok() && !report.tensors.empty();
  if (!context.headline.empty()) {
    out += fmt::format("<p id=\"headline\" class=\"headline {}\">{}</p>\n", ok ? "good" : "bad",
                       Escape(context.headline));
  }
  out += FactsTable(context);
  if (!context.suspect_note.empty()) {
    out += fmt::format(
        "<div id=\"suspect\" class=\"suspect-note\"><span class=\"mark\">&#9670;</span> {}</div>\n",
        Escape(context.suspect_note));
  }

  if (!report.tensors.empty()) {
    out += "<h2>Tensors</h2>\n";
    out += fmt::format("<p>{}: {} of {} tensors differ{}.</p>\n", Escape(report.DescribePolicy()),
                       report.MismatchingTensors(), report.tensors.size(),
                       report.MismatchingTensors() > 0 ? ", worst first" : "");
    out +=
        "<table id=\"tensors\" "
        "class=\"tensors\">\n<thead><tr><th>tensor</th><th>where</th><th>shape</th>"
        "<th>mismatching elements</th><th>max abs</th><th>max rel</th><th>max ULP</th>"
        "<th>1 &#8722; 2&#931;xy/&#931;(x&#178;+y&#178;)</th><th>first "
        "mismatch</th></tr></thead>\n<tbody>\n";
    std::vector<const TensorComparison*> order = report.WorstFirst();
    const std::set<const TensorComparison*> listed(order.begin(), order.end());
    for (const TensorComparison& t : report.tensors) {
      if (!listed.count(&t)) order.push_back(&t);
    }
    for (const TensorComparison* t : order) out += TensorRow(*t, suspects.count(t->name) > 0);
    out += "</tbody>\n</table>\n";
  }

  // Heatmaps: suspects first, then the worst.
  std::vector<const ErrorHeatmap*> maps;
  for (const TensorComparison* t : report.WorstFirst()) {
    for (const ErrorHeatmap& m : heatmaps) {
      if (!t->ok() && m.name == t->name && m.grid_rows > 0) maps.push_back(&m);
    }
  }
  std::stable_partition(maps.begin(), maps.end(),
                        [&](const ErrorHeatmap* m) { return suspects.count(m->name) > 0; });
  if (!maps.empty()) {
    out += "<h2>Where the errors are</h2>\n" + ScaleBar() + "<div class=\"maps\">\n";
    const size_t shown =
        std::min(maps.size(), static_cast<size_t>(std::max(context.max_heatmaps, 0)));
    for (size_t k = 0; k < shown; ++k) {
      const ErrorHeatmap& m = *maps[k];
      const bool suspect = suspects.count(m.name) > 0;
      out += fmt::format(
          "<figure class=\"heatmap{}\" data-name=\"{}\"><figcaption>{}<b>{}</b> [{}x{}], blocks of "
          "{}x{}: {} "
          "mismatching elements, largest error {}</figcaption>\n{}</figure>\n",
          suspect ? " suspect" : "", Escape(m.name),
          suspect ? "<span class=\"mark\">&#9670;</span> " : "", Escape(m.name), m.rows, m.cols,
          m.cell_rows, m.cell_cols, m.TotalMismatches(), Sci(TopError(m)), HeatmapSvg(m));
    }
    out += "</div>\n";
    if (shown < maps.size()) {
      out += fmt::format("<p>{} more mismatching tensors without a heatmap here.</p>\n",
                         maps.size() - shown);
    }
  }
  if (!context.details.empty())
    out += "<h2>Details</h2>\n<pre class=\"details\">" + Escape(context.details) + "</pre>\n";
  out += "</body>\n</html>\n";
  return out;
}

std::string DiffHtml(const TensorDiff& diff, const std::vector<ErrorHeatmap>& heatmaps) {
  HtmlReportContext context;
  context.title = "pipeproof diff";
  const int64_t bad = diff.report.MismatchingTensors();
  context.headline =
      bad ? fmt::format("MISMATCH: {} of {} tensors differ (exit 1)", bad,
                        diff.report.tensors.size())
          : fmt::format("MATCH: all {} tensors agree (exit 0)", diff.report.tensors.size());
  context.facts = {{"A (reference)", fmt::format("{}: {} tensors", diff.a_path, diff.a_tensors)},
                   {"B (run)", fmt::format("{}: {} tensors", diff.b_path, diff.b_tensors)},
                   {"comparison", diff.report.DescribePolicy()}};
  for (const std::string& n : diff.notes) context.details += n + "\n";
  return MismatchHtml(diff.report, heatmaps, context);
}

}  // namespace pipeproof
