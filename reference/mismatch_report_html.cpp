#include "reference/mismatch_report_html.h"

#include <fmt/format.h>

#include <cmath>

namespace pipeproof {

std::string HtmlEscape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

std::string Number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return fmt::format("{:.3g}", v);
}

std::string Row(const TensorComparison& t) {
  const std::string cls = t.ok() ? "ok" : "bad";
  if (!t.shape_problem.empty()) {
    return fmt::format("<tr class=\"{}\"><td>{}</td><td colspan=\"8\">{}</td></tr>\n", cls, HtmlEscape(t.name),
                       HtmlEscape(t.shape_problem + (t.note.empty() ? "" : " (" + t.note + ")")));
  }
  const std::string first =
      t.first_index < 0 ? "" : fmt::format("{} run {} ref {}", t.FirstPosition(), Number(t.first_run), Number(t.first_ref));
  return fmt::format(
      "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
      "<td>{}</td></tr>\n",
      cls, HtmlEscape(t.name), HtmlEscape(t.note), t.mismatches, t.count, Number(t.max_abs), Number(t.max_rel),
      t.max_ulp ? std::to_string(*t.max_ulp) : "n/a", Number(t.cosine), HtmlEscape(first), t.ok() ? "match" : "differs");
}

}  // namespace

std::string MismatchReportHtml(const MismatchReport& report, const HtmlPage& page) {
  std::string out = fmt::format(
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\n"
      "body {{ font-family: sans-serif; margin: 2em; }} table {{ border-collapse: collapse; }}\n"
      "td, th {{ border: 1px solid #ccc; padding: 0.2em 0.5em; font-family: monospace; text-align: left; }}\n"
      "tr.bad td {{ background: #fde2e2; }} tr.ok td {{ background: #e6f4e6; }}\n</style></head><body>\n<h1>{}</h1>\n",
      HtmlEscape(page.title), HtmlEscape(page.title));
  out += "<dl>\n";
  for (const auto& [key, value] : page.facts) out += fmt::format("<dt>{}</dt><dd>{}</dd>\n", HtmlEscape(key), HtmlEscape(value));
  out += fmt::format("<dt>comparison</dt><dd>{}</dd>\n</dl>\n", HtmlEscape(report.policy.Describe()));
  out += fmt::format("<p><b>{}</b></p>\n", report.ok() ? fmt::format("all {} tensors match", report.tensors.size())
                                                      : fmt::format("{} of {} tensors differ", report.MismatchingTensors(), report.tensors.size()));
  out += "<table>\n<tr><th>tensor</th><th>note</th><th>mismatching / compared</th><th>max abs</th><th>max rel</th>"
         "<th>max ULP</th><th>1 - 2xy/(x&sup2;+y&sup2;)</th><th>first mismatch</th><th></th></tr>\n";
  for (const TensorComparison* t : report.WorstFirst()) out += Row(*t);
  out += "</table>\n";
  for (const std::string& n : page.notes) out += fmt::format("<p>note: {}</p>\n", HtmlEscape(n));
  return out + "</body></html>\n";
}

}  // namespace pipeproof
