// Line and word scanning for the text readers, with every error located as file:line:col.
// Internal to schedule/.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "schedule/schedule.h"

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

}  // namespace pipeproof
