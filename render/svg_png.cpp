#include "render/svg_png.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "schedule/errors.h"

extern char** environ;

namespace pipeproof {
namespace {

constexpr const char* kConverter = "rsvg-convert";

// Runs `argv` (searched on PATH) with its output to /dev/null; its exit status, or -1 when it
// cannot be started, 128 + signal when killed.
int RunQuietly(const std::vector<std::string>& argv, std::string* error) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    if (error) *error = std::strerror(rc);
    return -1;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

bool HavePngConverter() { return RunQuietly({kConverter, "--version"}, nullptr) == 0; }

void WritePng(const std::string& svg, const std::string& png_path, double zoom) {
  namespace fs = std::filesystem;
  std::string name = (fs::temp_directory_path() / "pipeproof-render-XXXXXX.svg").string();
  const int fd = ::mkstemps(name.data(), 4);
  if (fd < 0)
    throw InputError(
        fmt::format("cannot make a temporary file for the SVG: {}", std::strerror(errno)));
  ::close(fd);
  {
    std::ofstream out(name, std::ios::binary);
    out << svg;
    if (!out.flush()) {
      std::remove(name.c_str());
      throw InputError("cannot write the temporary SVG file " + name);
    }
  }
  std::string error;
  const int status = RunQuietly({kConverter, "--zoom", fmt::format("{:g}", zoom),
                                 "--background-color", "white", "-o", png_path, name},
                                &error);
  std::remove(name.c_str());
  if (status == -1) {
    throw InputError(
        fmt::format("PNG output needs {} (Debian package librsvg2-bin), which cannot be run: {}; "
                    "write .svg instead, or install it (scripts/setup.sh does)",
                    kConverter, error.empty() ? "not found" : error));
  }
  if (status != 0)
    throw InputError(fmt::format("{} failed (exit {}) writing {}", kConverter, status, png_path));
}

}  // namespace pipeproof
