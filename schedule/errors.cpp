#include "schedule/errors.h"

#include <fmt/format.h>

namespace pipeproof {

InputError::InputError(const std::string& message, const std::string& location)
    : std::runtime_error(location.empty() ? "error: " + message
                                          : location + ": error: " + message),
      message_(message),
      location_(location) {}

InputError InputError::At(std::string_view file, int line, int col, std::string_view message) {
  std::string location(file);
  if (line > 0) location += fmt::format(":{}", line);
  if (line > 0 && col > 0) location += fmt::format(":{}", col);
  return InputError(std::string(message), location);
}

namespace {
std::string Escaped(std::string_view text, bool escape_quote) {
  std::string out;
  for (const char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c >= 0x7f || c == '\\' || (escape_quote && c == '\'')) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += ch;
    }
  }
  return out;
}
}  // namespace

std::string Quote(std::string_view text) {
  constexpr size_t kMax = 48;
  return "'" + Escaped(text.substr(0, kMax), true) + (text.size() > kMax ? "'..." : "'");
}

std::string Printable(std::string_view text) { return Escaped(text, false); }

bool IsPrintable(std::string_view text) {
  for (const char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c != '\n' && (c < 0x20 || c >= 0x7f)) return false;
  }
  return true;
}

void RequireRange(std::string_view what, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi) {
    throw InputError(fmt::format("{} is {}, outside the allowed range {}..{}", what, value, lo, hi));
  }
}

void CheckLimits(int64_t ranks, int64_t stages, int64_t microbatches) {
  RequireRange("ranks", ranks, 1, kMaxRanks);
  RequireRange("stages", stages, 1, kMaxStages);
  RequireRange("microbatches", microbatches, 1, kMaxMicrobatches);
  if (stages * microbatches > kMaxStageMicrobatches) {
    throw InputError(fmt::format("stages x microbatches is {} x {}, more than the limit of {}",
                                 stages, microbatches, kMaxStageMicrobatches));
  }
}

}  // namespace pipeproof
