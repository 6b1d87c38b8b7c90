// Line and word scanning for the text readers, with every error located as file:line:col.
// Internal to schedule/.
#pragma once

#include <cstdint>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "schedule/errors.h"
#include "schedule/schedule.h"
#include "schedule/threads.h"

namespace pipeproof {

struct Word {
  std::string_view text;
  int col = 1;  // 1-based
};

class LineScanner {
 public:
  LineScanner(std::string_view file, int number, std::string_view text, int first_col = 1)
      : file_(file), number_(number), text_(text), first_col_(first_col) {}

  int number() const { return number_; }
  Word Start() const { return {text_.substr(0, 0), first_col_}; }

  // The next whitespace-separated word; a '#' starts a comment that runs to the end of the line.
  std::optional<Word> NextWord() { return NextWordUntil('\0'); }
  std::optional<Word> NextWordUntil(char stop);
  bool Consume(char c);  // skips blanks, then takes `c` if it is next
  // Everything before the first `c` as its own scanner; this one continues after `c`.
  LineScanner Split(char c);
  std::string_view Rest() const;  // the words left, without the comment (does not consume)
  std::string_view Raw() const { return text_; }  // the whole line, comment and all
  void ExpectEnd();

  // `digits` is (part of) `word`; fails unless it is a decimal number in [lo, hi].
  int64_t Number(const Word& word, std::string_view digits, std::string_view what, int64_t hi,
                 int64_t lo = 0) const;
  int64_t NumberWord(std::string_view what, int64_t lo, int64_t hi);
  Action ParseActionAt(const Word& word, const ActionSyntax& syntax) const;

  [[noreturn]] void Fail(const Word& at, std::string_view message) const;

 private:
  void SkipBlanks();
  std::string_view file_;
  int number_;
  std::string_view text_;
  int first_col_;
  size_t pos_ = 0;
};

// Splits a file into lines (\n or \r\n), numbered from 1.
class TextLines {
 public:
  TextLines(std::string_view text, std::string_view file) : text_(text), file_(file) {}
  std::optional<LineScanner> Next();
  // A scanner placed just past the last line, for errors about what is missing.
  LineScanner EndOfInput() const { return LineScanner(file_, number_ + 1, {}, 1); }

 private:
  std::string_view text_;
  std::string_view file_;
  size_t pos_ = 0;
  int number_ = 0;
};

// How often `c` occurs in `text`. Eight bytes at a time: at -O2 GCC 12 does not vectorise
// std::count, and byte by byte the count took a sixth of reading a large file.
size_t CountOf(std::string_view text, char c);

// Reads the lines of a large file on two cores, half the bytes each, with the outcome of reading
// them in order. read(lines, total) reads its lines in order, each anew (it may be called again
// on them), counting actions on from `total` and throwing InputError at the first bad one or the
// first past kMaxActions; bytes(line) is a line's length. The first half's first error comes first
// in the file; the second half is read again, in order after the first, where it failed or where
// the count passes the limit.
template <typename Line, typename Bytes, typename Read>
void ReadLinesSideBySide(std::span<Line> lines, const Bytes& bytes, const Read& read) {
  constexpr size_t kWorthAThread = 256 << 10;  // a thread costs tens of microseconds
  size_t all = 0;
  for (const Line& line : lines) all += bytes(line);
  int64_t total = 0;
  if (all < kWorthAThread || lines.size() < 2) {
    read(lines, total);
    return;
  }
  size_t half = 0;
  for (size_t seen = 0; half + 1 < lines.size() && seen < all / 2; ++half) seen += bytes(lines[half]);
  const std::span<Line> head = lines.first(half), tail = lines.subspan(half);
  // Each half counts on a cache line of its own: counters side by side, written for every action
  // by two cores, would have the cores take the line from each other each time.
  struct alignas(64) Count {
    int64_t n = 0;
  };
  Count head_total, tail_total;
  Beside<void> second([&] { read(tail, tail_total.n); });
  std::exception_ptr head_error;
  try {
    read(head, head_total.n);
  } catch (...) {
    head_error = std::current_exception();
  }
  bool tail_failed = false;
  try {
    second.get();
  } catch (const InputError&) {
    tail_failed = true;
  }
  if (head_error) std::rethrow_exception(head_error);
  if (tail_failed || head_total.n + tail_total.n > kMaxActions) read(tail, head_total.n);
}

}  // namespace pipeproof
