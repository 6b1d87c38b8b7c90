// Runs a command line for tests and captures what it printed and its exit status.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace pipeproof::testing {

struct CommandResult {
  int status = -1;  // exit status, or 128 + signal
  std::string out;  // stdout
  std::string err;  // stderr
};

inline std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream all;
  all << in.rdbuf();
  return all.str();
}

// `args` is appended to the pipeproof binary's path and run through /bin/sh.
inline CommandResult RunPipeproof(const std::string& args) {
  static int counter = 0;
  const std::string base = ::testing::TempDir() + "/pipeproof_cmd_" + std::to_string(++counter);
  const std::string cmd = std::string(PIPEPROOF_BINARY) + " " + args + " >" + base + ".out 2>" +
                          base + ".err";
  int raw = std::system(cmd.c_str());
  CommandResult r;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  r.out = Slurp(base + ".out");
  r.err = Slurp(base + ".err");
  return r;
}

}  // namespace pipeproof::testing
