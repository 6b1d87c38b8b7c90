// The launcher behind `pipeproof inject`: runs a program with the NCCL interposer preloaded, a
// fault plan and a fresh trace directory handed to it through the environment, forwards the
// signals meant for it, and waits for it (docs/design.md, "Users' own code").
#pragma once

#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace pipeproof {

struct LaunchOptions {
  std::vector<std::string> command;  // the program and its arguments (found on PATH)
  std::string plan;                  // fault plan file (JSON); empty: calls run undisturbed
  std::string trace_dir = "pipeproof-traces";  // emptied of old traces first
  std::string delays = "auto";                 // auto, host or gpu: how planned delays are made
  // The interposer; empty: $PIPEPROOF_NCCL_INTERPOSER, else lib/libpipeproof_nccl.so next to the
  // running program's bin/.
  std::string library;
  bool quiet = false;  // no notices from the interposer
};

struct LaunchResult {
  int status = 0;         // the program's exit status; 128 + N when signal N ended it
  std::string trace_dir;  // absolute
  int traces = 0;         // rank traces in trace_dir after the run
};

// Runs options.command under the interposer. Throws InputError (exit status 2) for a missing
// interposer, a bad fault plan, a trace directory it cannot make, or a program it cannot start.
// The plan's summary and the removal of old traces are told on `notices`.
LaunchResult LaunchWithInterposer(const LaunchOptions& options, std::ostream& notices);

// The parts, for callers and tests:
// The interposer's absolute path (see LaunchOptions::library); InputError when it is not there.
std::string FindInterposer(const std::string& given);
// Makes `dir` if missing and removes the traces of an earlier run; returns its absolute path.
std::string PrepareTraceDirectory(const std::string& dir, std::ostream& notices);
// Runs `command` with `env` added to this process's environment and waits for it, passing
// SIGTERM and SIGHUP on and ignoring SIGINT and SIGQUIT meanwhile (the terminal sends those to the
// child too). Returns its exit status, 128 + N when signal N ended it; InputError when it cannot
// be started.
int RunWithEnvironment(const std::vector<std::string>& command,
                       const std::vector<std::pair<std::string, std::string>>& env);

}  // namespace pipeproof
