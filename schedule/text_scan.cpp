#include "schedule/text_scan.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstring>

namespace pipeproof {

namespace {
bool IsBlank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }
}  // namespace

void LineScanner::SkipBlanks() {
  while (pos_ < text_.size() && IsBlank(text_[pos_])) ++pos_;
  if (pos_ < text_.size() && text_[pos_] == '#') pos_ = text_.size();
}

std::optional<Word> LineScanner::NextWordUntil(char stop) {
  SkipBlanks();
  if (pos_ >= text_.size()) return std::nullopt;
  size_t start = pos_;
  while (pos_ < text_.size()) {
    const char c = text_[pos_];
    // A printable character (above ' ') is never a blank: one compare for most of a word.
    if (c <= ' ' && IsBlank(c)) break;
    if (c == '#' || (stop != '\0' && c == stop)) break;
    ++pos_;
  }
  if (pos_ == start) return std::nullopt;
  return Word{text_.substr(start, pos_ - start), first_col_ + static_cast<int>(start)};
}

bool LineScanner::Consume(char c) {
  SkipBlanks();
  if (pos_ < text_.size() && text_[pos_] == c) {
    ++pos_;
    return true;
  }
  return false;
}

LineScanner LineScanner::Split(char c) {
  size_t at = text_.find(c, pos_);
  size_t hash = text_.find('#', pos_);
  if (at == std::string_view::npos || (hash != std::string_view::npos && hash < at)) {
    Fail({text_.substr(pos_, 0), first_col_ + static_cast<int>(pos_)},
         fmt::format("expected '{}'", c));
  }
  LineScanner head(file_, number_, text_.substr(0, at), first_col_);
  head.pos_ = pos_;
  pos_ = at + 1;
  return head;
}

std::string_view LineScanner::Rest() const {
  LineScanner copy = *this;
  copy.SkipBlanks();
  std::string_view rest = text_.substr(copy.pos_);
  if (size_t hash = rest.find('#'); hash != std::string_view::npos) rest = rest.substr(0, hash);
  while (!rest.empty() && IsBlank(rest.back())) rest.remove_suffix(1);
  return rest;
}

void LineScanner::ExpectEnd() {
  if (auto extra = NextWord()) Fail(*extra, fmt::format("unexpected {}", Quote(extra->text)));
}

int64_t LineScanner::Number(const Word& word, std::string_view digits, std::string_view what,
                            int64_t hi, int64_t lo) const {
  Word at = word;
  if (digits.data() >= word.text.data() && digits.data() <= word.text.data() + word.text.size()) {
    at.col += static_cast<int>(digits.data() - word.text.data());
  }
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (digits.empty() || digits.front() == '-' || digits.front() == '+' ||
      ec == std::errc::invalid_argument || ptr != digits.data() + digits.size()) {
    Fail(at, fmt::format("{}: {} is not a number", what, Quote(digits)));
  }
  if (ec == std::errc::result_out_of_range || value < lo || value > hi) {
    Fail(at, fmt::format("{}: {} is outside the allowed range {}..{}", what, digits, lo, hi));
  }
  return value;
}

int64_t LineScanner::NumberWord(std::string_view what, int64_t lo, int64_t hi) {
  auto word = NextWord();
  if (!word) Fail({text_.substr(pos_, 0), first_col_ + static_cast<int>(pos_)},
                  fmt::format("'{}' needs a number", what));
  return Number(*word, word->text, what, hi, lo);
}

Action LineScanner::ParseActionAt(const Word& word, const ActionSyntax& syntax) const {
  int column = 0;
  try {
    return ParseAction(word.text, syntax, &column);
  } catch (const InputError& e) {
    Fail({word.text, word.col + column}, e.message());
  }
}

void LineScanner::Fail(const Word& at, std::string_view message) const {
  throw InputError::At(file_, number_, at.col, message);
}

std::optional<LineScanner> TextLines::Next() {
  if (pos_ >= text_.size()) return std::nullopt;
  size_t end = text_.find('\n', pos_);
  if (end == std::string_view::npos) end = text_.size();
  std::string_view line = text_.substr(pos_, end - pos_);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  pos_ = end + 1;
  return LineScanner(file_, ++number_, line);
}

size_t CountOf(std::string_view text, char c) {
  constexpr uint64_t kLow7 = 0x7F7F7F7F7F7F7F7F, kHigh = 0x8080808080808080, kOnes = 0x0101010101010101;
  const uint64_t pattern = kOnes * static_cast<unsigned char>(c);
  size_t count = 0, i = 0;
  for (; i + 8 <= text.size(); i += 8) {
    uint64_t word;
    std::memcpy(&word, text.data() + i, 8);
    const uint64_t x = word ^ pattern;  // a zero byte where `c` was
    // The high bit of each byte set where the byte is not zero, exactly (no carries between bytes).
    const uint64_t nonzero = (((x & kLow7) + kLow7) | x) & kHigh;
    count += 8 - (((nonzero >> 7) * kOnes) >> 56);  // the bytes' sum lands in the top byte
  }
  return count + std::count(text.begin() + i, text.end(), c);
}

}  // namespace pipeproof
