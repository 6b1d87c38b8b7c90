// See issue 7.
#include "cli/command.h"

namespace pipeproof {
void AddRenderCommands(CLI::App&, Commands&) {}
}  // namespace pipeproof
