// See issue 8.
#include "cli/command.h"

namespace pipeproof {
void AddUserCodeCommands(CLI::App&, Commands&) {}
}  // namespace pipeproof
