// Small helpers for writing SVG and HTML text: escaping and number formatting. Internal to
// render/.
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>

namespace pipeproof::render_internal {

// Text for XML/HTML content and attribute values.
inline std::string Escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        // Control characters are not allowed in XML 1.0.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') {
          out += ' ';
        } else {
          out += c;
        }
    }
  }
  return out;
}

// A coordinate: two decimals, no trailing zeros (smaller files, same picture).
inline std::string Num(double x) {
  std::string s = fmt::format("{:.2f}", x);
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  if (s == "-0") s = "0";
  return s;
}

}  // namespace pipeproof::render_internal
