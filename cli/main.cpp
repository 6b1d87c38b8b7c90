// pipeproof: proves pipeline-parallel schedules correct, then tries to break them.
// Thin: parses flags and calls the libraries; exit statuses in cli/exit_codes.h.

#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <cstdint>
#include <iostream>

#include "cli/command.h"
#include "cli/exit_codes.h"

namespace {

// Large buffers from the heap and kept there for reuse: verify builds and drops arrays of
// millions of entries, and pages fresh from the kernel (zeroed at first touch) cost it more than
// reusing them, 12 to 15% of the command (bench/verify_command_bench). The heap is grown once by
// a quarter GiB of address space (memory only where touched) and asks for transparent huge
// pages: a fault per 2 MiB instead of per 4 KiB. On a file of 100k actions `verify --no-z3`
// spent a third of its time in page faults (33 ms, 5000 faults; 26 ms and 1000 faults after).
// Where the kernel has no huge pages for it, the advice changes nothing.
void HeapOnHugePages() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's largest
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 256 << 20);
  void* grow = malloc(1 << 20);  // below the threshold: from the heap, which grows by the pad
  if (!grow) return;
  constexpr uintptr_t kHugePage = 2 << 20;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(grow) + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(sbrk(0));
  free(grow);
  // A heap glibc had to map elsewhere (brk refused) does not end at sbrk(0): leave it be.
  if (end > begin && end - begin <= (uintptr_t{512} << 20)) {
    madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace pipeproof;
  HeapOnHugePages();
  CLI::App app{
      "pipeproof: prove pipeline-parallel training schedules correct, then try to break them"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Print help for every subcommand");
  app.set_version_flag("--version", std::string("pipeproof ") + PIPEPROOF_VERSION);
  Commands commands;
  if (argc > 1 && argv[1][0] != '-') commands.named = argv[1];  // else --help-all may list them all
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
    for (const Command& c : commands.declared) {
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
