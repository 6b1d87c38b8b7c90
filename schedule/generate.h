// Generating a schedule of a kind in the table of kinds (schedule/kinds.h): gpipe, 1f1b,
// interleaved-1f1b, zb1p, dualpipe, dualpipev.
#pragma once

#include <string>
#include <vector>

#include "schedule/schedule.h"

namespace pipeproof {

struct GenerateOptions {
  std::string kind;         // one of GeneratorKinds()
  int ranks = 0;
  int microbatches = 0;
  int virtual_stages = 2;   // interleaved-1f1b: stages per rank
  bool overlap = true;      // dualpipe/dualpipev: the module has an overlapped forward-backward
  bool with_comm = true;    // false: the compute-only projection (no SEND/RECV/WAIT)
  // With SEND/RECV: a WAIT_SEND for every SEND of a rank without WAITs, where PyTorch's runtime
  // puts it (AddWaitSends).
  bool wait_sends = false;
};

std::vector<std::string> GeneratorKinds();  // the table's names, in its order

// The schedule of `options.kind` for the given size. Invalid sizes throw InputError naming the
// rule ("dualpipe needs an even number of ranks", ...).
Schedule Generate(const GenerateOptions& options);

// Generate() for DualPipe and DualPipeV, exactly as the reference implementation's step() runs
// them (deepseek-ai/DualPipe, dualpipe/dualpipe.py and dualpipe/dualpipev.py).
Schedule GenerateDualPipe(int ranks, int microbatches, bool overlap);
Schedule GenerateDualPipeV(int ranks, int microbatches, bool overlap);

// The schedule without its SEND/RECV/WAIT/WAIT_SEND actions (data-parallel actions stay).
Schedule ComputeOnly(const Schedule& schedule);

}  // namespace pipeproof
