// pipeproof: proves pipeline-parallel schedules correct, then tries to break them.
// Thin: parses flags and calls the libraries; exit statuses in cli/exit_codes.h.

#include <malloc.h>

#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/command.h"
#include "cli/exit_codes.h"

int main(int argc, char** argv) {
  using namespace pipeproof;
  // Large buffers from the heap and kept there for reuse: verify builds and drops arrays of
  // millions of entries, and pages fresh from the kernel (zeroed at first touch) cost it more
  // than reusing them, 12 to 15% of the command (bench/verify_command_bench).
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's largest
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 256 << 20);
  CLI::App app{
      "pipeproof: prove pipeline-parallel training schedules correct, then try to break them"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Print help for every subcommand");
  app.set_version_flag("--version", std::string("pipeproof ") + PIPEPROOF_VERSION);
  Commands commands;
  AddScheduleCommands(app, commands);
  AddVerifyCommands(app, commands);
  AddRunCommands(app, commands);
  AddFuzzCommands(app, commands);
  AddRenderCommands(app, commands);
  AddUserCodeCommands(app, commands);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);  // prints the message and the usage line
    return kExitBadInput;
  }
  try {
    for (const Command& c : commands) {
      if (c.app->parsed()) return c.run();
    }
  } catch (const InputError& e) {
    std::cerr << (e.location().empty() ? "pipeproof: " : "") << e.what() << '\n';
    return kExitBadInput;
  } catch (const std::bad_alloc&) {
    std::cerr << "pipeproof: error: out of memory\n";
    return kExitRuntimeFault;
  } catch (const std::exception& e) {
    std::cerr << "pipeproof: internal error: " << e.what() << '\n';
    return kExitRuntimeFault;
  }
  return kExitBadInput;
}
