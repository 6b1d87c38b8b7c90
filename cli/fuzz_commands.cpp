// See issue 5.
#include "cli/command.h"

namespace pipeproof {
void AddFuzzCommands(CLI::App&, Commands&) {}
}  // namespace pipeproof
