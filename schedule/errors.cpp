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

std::string Quote(std::string_view text) {
  constexpr size_t kMax = 48;
  std::string out = "'";
  for (size_t i = 0; i < text.size() && i < kMax; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c >= 0x7f || c == '\\' || c == '\'') {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  out += text.size() > kMax ? "'..." : "'";
  return out;
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
