// Errors, limits and quoting shared by every library: the bad-input error (exit status 2), the
// size limits every reader and generator refuses beyond, and how input is quoted in a message.
// Small on purpose: the NCCL interposer compiles errors.cpp into itself without the schedule model.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace pipeproof {

// Sizes beyond these are refused by every reader and generator, with the limit named.
inline constexpr int kMaxRanks = 4096;
inline constexpr int kMaxStages = 65536;
inline constexpr int kMaxMicrobatches = 1 << 20;
inline constexpr int64_t kMaxStageMicrobatches = int64_t{1} << 20;  // stages x microbatches
inline constexpr int64_t kMaxActions = int64_t{1} << 22;             // all ranks together

// Bad input or usage (exit status 2). what() is "file:line:col: error: message" when the
// error has a place in a file, "error: message" otherwise.
class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& message, const std::string& location = "");
  // A place in a file: line and col are 1-based; 0 leaves them out.
  static InputError At(std::string_view file, int line, int col, std::string_view message);
  const std::string& message() const { return message_; }
  const std::string& location() const { return location_; }

 private:
  std::string message_;
  std::string location_;
};

// `text` quoted for an error message: control and non-ASCII bytes as \xNN, long text cut short.
std::string Quote(std::string_view text);
// `text` as it is, but control and non-ASCII bytes (and backslashes) as \xNN: safe to print.
std::string Printable(std::string_view text);
// Only printable ASCII and newlines: what every error message must be, whatever bytes the input
// held (the readers' fuzz oracles check it).
bool IsPrintable(std::string_view text);

// Throws InputError "WHAT is VALUE, outside the allowed range LO..HI" unless lo <= value <= hi.
void RequireRange(std::string_view what, int64_t value, int64_t lo, int64_t hi);

// Refuses sizes beyond the limits above, naming the limit (InputError).
void CheckLimits(int64_t ranks, int64_t stages, int64_t microbatches);

}  // namespace pipeproof
