// Runs a command line for tests and captures its output and exit status: the command-line tests
// in cli/ (cli/command_test_util.h adds the pipeproof binary) and the library tests that run what
// a library printed (the fuzz campaign's replay commands). Output files carry the process id:
// CTest runs every test case as its own process, several at once.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace pipeproof::testing {

struct CommandOutput {
  int status = -1;  // exit status, or 128 + signal
  std::string out;
  std::string err;
  double seconds = 0;
};

inline std::string ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream all;
  all << in.rdbuf();
  return all.str();
}

// A path for a scratch file of this test process.
inline std::string ScratchPath(const std::string& name) {
  return ::testing::TempDir() + "/pipeproof_" + std::to_string(::getpid()) + "_" + name;
}

// A scratch directory of this test process, made.
inline std::string ScratchDir(const std::string& name) {
  const std::string dir = ScratchPath(name);
  std::filesystem::create_directories(dir);
  return dir;
}

inline bool Has(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

inline CommandOutput RunCommand(const std::string& command) {
  static int counter = 0;
  const std::string base = ScratchPath("cmd_" + std::to_string(++counter));
  const std::string cmd = command + " >" + base + ".out 2>" + base + ".err";
  const auto start = std::chrono::steady_clock::now();
  const int raw = std::system(cmd.c_str());
  CommandOutput r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  r.out = ReadWhole(base + ".out");
  r.err = ReadWhole(base + ".err");
  std::remove((base + ".out").c_str());
  std::remove((base + ".err").c_str());
  return r;
}

}  // namespace pipeproof::testing
