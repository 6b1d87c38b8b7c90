#include "schedule/read_file.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "schedule/errors.h"

namespace pipeproof {
namespace {

std::string KindOfMode(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "";
    case S_IFDIR: return "a directory";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFIFO: return "a pipe";
    case S_IFSOCK: return "a socket";
    default: return "not a regular file";
  }
}

}  // namespace

std::string FileKind(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno == ENOENT ? "nothing" : std::strerror(errno);
  return KindOfMode(st.st_mode);
}

namespace {

// The size of a regular file; InputError for anything else.
int64_t RegularFileSize(const std::string& path, std::string_view what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw InputError::At(path, 0, 0, fmt::format("cannot read the {}: {}", what, std::strerror(errno)));
  }
  if (const std::string kind = KindOfMode(st.st_mode); !kind.empty()) {
    throw InputError::At(path, 0, 0, fmt::format("this is {}, not a {} file", kind, what));
  }
  return st.st_size;
}

std::string ReadFirst(const std::string& path, int64_t bytes_wanted, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw InputError::At(path, 0, 0, fmt::format("cannot read the {}: {}", what, std::strerror(errno)));
  }
  std::string bytes(static_cast<size_t>(bytes_wanted), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (in.gcount() != static_cast<std::streamsize>(bytes.size())) {
    throw InputError::At(path, 0, 0, fmt::format("cannot read the whole {} file", what));
  }
  return bytes;
}

}  // namespace

std::string ReadFileBounded(const std::string& path, int64_t max_bytes, std::string_view what) {
  const int64_t size = RegularFileSize(path, what);
  if (size > max_bytes) {
    throw InputError::At(path, 0, 0,
                         fmt::format("the file is {} bytes, more than the limit of {} for a {}",
                                     size, max_bytes, what));
  }
  return ReadFirst(path, size, what);
}

FilePrefix ReadFilePrefix(const std::string& path, uint64_t max_bytes, std::string_view what) {
  FilePrefix prefix;
  prefix.file_size = static_cast<uint64_t>(RegularFileSize(path, what));
  prefix.bytes = ReadFirst(path, static_cast<int64_t>(std::min(max_bytes, prefix.file_size)), what);
  return prefix;
}

}  // namespace pipeproof
