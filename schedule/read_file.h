// Reading a whole input file within a bound, refusing early and by name what cannot be one: a
// directory, a device such as /dev/zero, a pipe, a file larger than its format's limit. Every
// reader of a file that is loaded whole (schedules, fault plans, traces, tensor dumps) goes
// through it, so none can be made to grow without end.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace pipeproof {

// The bytes of the regular file `path`. InputError at `path` naming what it is instead ("a
// directory, not a fault plan"), or its size against `max_bytes`, or why it cannot be read.
// `what` names the expected content in messages: "schedule", "fault plan", ...
std::string ReadFileBounded(const std::string& path, int64_t max_bytes, std::string_view what);

// The first `max_bytes` bytes of a regular file (all of it when it is shorter) and its size, with
// ReadFileBounded's refusals: a reader checks a header before it reads the rest.
struct FilePrefix {
  std::string bytes;
  uint64_t file_size = 0;
};
FilePrefix ReadFilePrefix(const std::string& path, uint64_t max_bytes, std::string_view what);

// What kind of thing `path` is, for messages: "a directory", "a character device", ...; "" for a
// regular file, "nothing" when it does not exist.
std::string FileKind(const std::string& path);

}  // namespace pipeproof
