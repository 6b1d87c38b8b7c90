// run: see issue 4.
#include "cli/command.h"

namespace pipeproof {
void AddRunCommands(CLI::App&, Commands&) {}
}  // namespace pipeproof
