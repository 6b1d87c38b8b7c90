// The command-line tests' runner: `pipeproof ARGS` as a user types it, output and exit status
// captured (fuzz/process_test_util.h runs any command line).
#pragma once

#include <string>

#include "fuzz/process_test_util.h"

namespace pipeproof::testing {

// `pipeproof ARGS`.
inline CommandOutput RunPipeproof(const std::string& args) {
  return RunCommand(std::string(PIPEPROOF_BINARY) + " " + args);
}

}  // namespace pipeproof::testing
