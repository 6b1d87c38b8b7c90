#include "fuzz/reader_oracle.h"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace pipeproof {
namespace {

[[noreturn]] void Violation(std::string_view what, const std::string& detail) {
  std::fprintf(stderr, "reader oracle violated: %.*s\n%s\n", static_cast<int>(what.size()),
               what.data(), detail.c_str());
  std::abort();
}

constexpr std::string_view kName = "fuzz-input";

Schedule Read(Format format, std::string_view text) {
  ReadOptions options;
  options.format = format;
  return ParseSchedule(text, kName, options);
}

}  // namespace

void CheckReader(Format format, std::string_view data) {
  Schedule first;
  try {
    first = Read(format, data);
  } catch (const InputError& e) {
    std::string_view what = e.what();
    if (what.substr(0, kName.size()) != kName || what.find(": error: ") == std::string::npos) {
      Violation("an error must name the file and say 'error:'", std::string(what));
    }
    if (!IsPrintable(what)) Violation("an error must not echo raw bytes", std::string(what));
    return;
  }
  // What was read must survive its own writer.
  const std::string written = WriteSchedule(first, format);
  Schedule second;
  try {
    second = Read(format, written);
  } catch (const InputError& e) {
    Violation("the writer's output does not read back", std::string(e.what()) + "\n" + written);
  }
  if (!(second == first)) Violation("the round trip changed the schedule", written);
}

}  // namespace pipeproof
