// verify, simulate: see issue 3.
#include "cli/command.h"

namespace pipeproof {
void AddVerifyCommands(CLI::App&, Commands&) {}
}  // namespace pipeproof
