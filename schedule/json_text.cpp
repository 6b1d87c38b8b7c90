#include "schedule/json_text.h"

#include "schedule/errors.h"  // Printable

#include <nlohmann/json.hpp>

#include <cstring>
#include <iterator>
#include <unordered_set>
#include <vector>

namespace pipeproof {
namespace {

using json = nlohmann::json;

// Finds where the value at a JSON pointer starts, by replaying the parse with a SAX handler
// that tracks the current path and reads the byte offset from a counting iterator. A value
// starts after the previous token (and any blanks, ',' or ':'), which is where the offset stood
// at the previous event; numbers make the lexer read one character ahead, so "where the
// current token ended" is not reliable, but "where the previous one ended" is.
class PointerLocator : public nlohmann::json_sax<json> {
 public:
  PointerLocator(const std::vector<std::string>& target, const size_t* offset)
      : target_(target), offset_(offset) {}
  size_t found() const { return found_; }

  bool null() override { return Value(); }
  bool boolean(bool) override { return Value(); }
  bool number_integer(number_integer_t) override { return Value(); }
  bool number_unsigned(number_unsigned_t) override { return Value(); }
  bool number_float(number_float_t, const string_t&) override { return Value(); }
  bool string(string_t&) override { return Value(); }
  bool binary(binary_t&) override { return Value(); }
  bool start_object(std::size_t) override { return Open(false); }
  bool key(string_t& k) override {
    path_.back() = k;
    return Mark();
  }
  bool end_object() override { return Close(); }
  bool start_array(std::size_t) override { return Open(true); }
  bool end_array() override { return Close(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  bool Here() {
    if (path_ == target_ && found_ == std::string::npos) found_ = previous_end_;
    return found_ == std::string::npos;
  }
  bool Mark() {
    previous_end_ = *offset_;
    return true;
  }
  bool Value() {
    bool go_on = Here();
    Advance();
    Mark();
    return go_on;
  }
  bool Open(bool array) {
    bool go_on = Here();
    path_.push_back(array ? "0" : "");
    is_array_.push_back(array);
    Mark();
    return go_on;
  }
  bool Close() {
    path_.pop_back();
    is_array_.pop_back();
    Advance();
    return Mark();
  }
  void Advance() {  // on to the next element of the enclosing array
    if (!is_array_.empty() && is_array_.back()) {
      path_.back() = std::to_string(std::stoul(path_.back()) + 1);
    }
  }
  std::vector<std::string> target_;
  const size_t* offset_;
  std::vector<std::string> path_;
  std::vector<bool> is_array_;
  size_t previous_end_ = 0;
  size_t found_ = std::string::npos;
};

struct CountingIterator {
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;
  const char* p;
  const char* base;
  size_t* offset;
  reference operator*() const { return *p; }
  CountingIterator& operator++() {
    ++p;
    *offset = static_cast<size_t>(p - base);
    return *this;
  }
  CountingIterator operator++(int) {
    CountingIterator old = *this;
    ++*this;
    return old;
  }
  bool operator==(const CountingIterator& o) const { return p == o.p; }
  bool operator!=(const CountingIterator& o) const { return p != o.p; }
};

// Keeps the keys of every open object; stops the parse at the first repeated one.
class DuplicateKeyFinder final : public nlohmann::json_sax<json> {
 public:
  std::optional<std::string> duplicate;

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    open_.emplace_back();
    return true;
  }
  bool key(string_t& key) override {
    if (open_.back().insert(key).second) return true;
    duplicate = key;
    return false;
  }
  bool end_object() override {
    open_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  std::vector<std::unordered_set<std::string>> open_;
};

}  // namespace

std::optional<std::string> FindDuplicateKey(std::string_view text) {
  DuplicateKeyFinder finder;
  try {
    json::sax_parse(text.begin(), text.end(), &finder);
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;  // not valid JSON: the caller's parse reports it
  }
  return finder.duplicate;
}

TextPlace PlaceOfOffset(std::string_view text, size_t offset) {
  TextPlace place{1, 1};
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++place.line;
      place.col = 1;
    } else {
      ++place.col;
    }
  }
  return place;
}

TextPlace LocateJsonValue(std::string_view text, const std::vector<std::string>& path) {
  size_t offset = 0;
  PointerLocator locator(path, &offset);
  CountingIterator begin{text.data(), text.data(), &offset};
  CountingIterator end{text.data() + text.size(), text.data(), &offset};
  try {
    json::sax_parse(begin, end, &locator);
  } catch (const nlohmann::json::exception&) {
    return {};
  }
  size_t at = locator.found();
  if (at == std::string::npos) return {};
  while (at < text.size() && std::strchr(" \t\r\n,:", text[at])) ++at;
  return PlaceOfOffset(text, at);
}

std::string JsonParserMessage(std::string_view what) {
  if (what.rfind("[json.exception.", 0) == 0) {
    const size_t bracket = what.find("] ");
    const size_t column = what.find("column ");
    const size_t colon = what.find(": ", column == std::string_view::npos ? 0 : column);
    if (column != std::string_view::npos && colon != std::string_view::npos) {
      what.remove_prefix(colon + 2);
    } else if (bracket != std::string_view::npos) {
      what.remove_prefix(bracket + 2);
    }
  }
  return Printable(what);
}

}  // namespace pipeproof
