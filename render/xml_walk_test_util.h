// A small XML reader for the tests of render/'s SVG: elements, attributes and text, with
// well-formedness checked on the way (every tag closed in order, attributes quoted, entities
// known). Enough for our own output; not a general XML parser.
#pragma once

#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pipeproof::testing {

struct XmlElement {
  std::string name;
  std::map<std::string, std::string> attrs;
  std::string text;  // the element's own text, entities decoded
  std::vector<std::unique_ptr<XmlElement>> children;

  std::string Attr(const std::string& key) const {
    auto it = attrs.find(key);
    return it == attrs.end() ? "" : it->second;
  }
  double Number(const std::string& key) const { return std::strtod(Attr(key).c_str(), nullptr); }
  // Every element below this one (depth first, this one excluded) that `match` accepts.
  void Collect(const std::function<bool(const XmlElement&)>& match,
               std::vector<const XmlElement*>& out) const {
    for (const auto& c : children) {
      if (match(*c)) out.push_back(c.get());
      c->Collect(match, out);
    }
  }
  std::vector<const XmlElement*> WithClass(const std::string& cls) const {
    std::vector<const XmlElement*> out;
    Collect([&](const XmlElement& e) { return e.Attr("class") == cls; }, out);
    return out;
  }
  std::vector<const XmlElement*> Named(const std::string& name) const {
    std::vector<const XmlElement*> out;
    Collect([&](const XmlElement& e) { return e.name == name; }, out);
    return out;
  }
  // The text of this element and all below it.
  std::string AllText() const {
    std::string out = text;
    for (const auto& c : children) out += c->AllText();
    return out;
  }
};

inline std::string DecodeEntities(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out += s[i];
      continue;
    }
    const size_t end = s.find(';', i);
    if (end == std::string_view::npos) throw std::runtime_error("unterminated entity");
    const std::string_view e = s.substr(i + 1, end - i - 1);
    if (e == "amp")
      out += '&';
    else if (e == "lt")
      out += '<';
    else if (e == "gt")
      out += '>';
    else if (e == "quot")
      out += '"';
    else if (e == "apos")
      out += '\'';
    else if (!e.empty() && e[0] == '#')
      out += '?';  // a character reference; its value does not matter here
    else
      throw std::runtime_error("unknown entity &" + std::string(e) + ";");
    i = end;
  }
  return out;
}

// Parses `xml`; throws std::runtime_error at the first thing that is not well-formed.
inline std::unique_ptr<XmlElement> ParseXml(std::string_view xml) {
  auto root = std::make_unique<XmlElement>();
  root->name = "#document";
  std::vector<XmlElement*> stack{root.get()};
  size_t i = 0;
  auto fail = [&](const std::string& what) {
    throw std::runtime_error(what + " at offset " + std::to_string(i));
  };
  while (i < xml.size()) {
    if (xml[i] != '<') {
      const size_t next = xml.find('<', i);
      const size_t end = next == std::string_view::npos ? xml.size() : next;
      stack.back()->text += DecodeEntities(xml.substr(i, end - i));
      i = end;
      continue;
    }
    if (xml.substr(i, 4) == "<!--") {
      const size_t end = xml.find("-->", i);
      if (end == std::string_view::npos) fail("unterminated comment");
      i = end + 3;
      continue;
    }
    if (xml.substr(i, 2) == "<?" || xml.substr(i, 2) == "<!") {
      const size_t end = xml.find('>', i);
      if (end == std::string_view::npos) fail("unterminated declaration");
      i = end + 1;
      continue;
    }
    const size_t end = xml.find('>', i);
    if (end == std::string_view::npos) fail("unterminated tag");
    std::string_view tag = xml.substr(i + 1, end - i - 1);
    i = end + 1;
    if (!tag.empty() && tag[0] == '/') {
      const std::string name(tag.substr(1));
      if (stack.size() < 2 || stack.back()->name != name)
        fail("</" + name + "> closes <" + stack.back()->name + ">");
      stack.pop_back();
      continue;
    }
    const bool self_closing = !tag.empty() && tag.back() == '/';
    if (self_closing) tag.remove_suffix(1);
    auto element = std::make_unique<XmlElement>();
    size_t p = 0;
    while (p < tag.size() && tag[p] != ' ' && tag[p] != '\n') ++p;
    element->name = std::string(tag.substr(0, p));
    if (element->name.empty()) fail("empty tag name");
    while (p < tag.size()) {
      while (p < tag.size() && (tag[p] == ' ' || tag[p] == '\n')) ++p;
      if (p >= tag.size()) break;
      const size_t eq = tag.find('=', p);
      if (eq == std::string_view::npos || eq + 1 >= tag.size() || tag[eq + 1] != '"')
        fail("unquoted attribute");
      const size_t close = tag.find('"', eq + 2);
      if (close == std::string_view::npos) fail("unterminated attribute");
      const std::string key(tag.substr(p, eq - p));
      if (element->attrs.count(key)) fail("duplicate attribute " + key);
      element->attrs[key] = DecodeEntities(tag.substr(eq + 2, close - eq - 2));
      p = close + 1;
    }
    XmlElement* raw = element.get();
    stack.back()->children.push_back(std::move(element));
    if (!self_closing) stack.push_back(raw);
  }
  if (stack.size() != 1) throw std::runtime_error("<" + stack.back()->name + "> is never closed");
  return root;
}

}  // namespace pipeproof::testing
