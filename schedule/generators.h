// The generators behind the table of kinds (schedule/kinds.h), each writing the schedule of a
// size its row's rule accepts. Call Generate() instead: it checks the size first. The classic
// kinds are written as each rank's compute order (generate.cpp; Lower() adds their SEND/RECVs);
// DualPipe and DualPipeV with the reference's own communication (dualpipe.cpp).
#pragma once

#include "schedule/generate.h"
#include "schedule/schedule.h"

namespace pipeproof::generators {

Schedule GPipe(const GenerateOptions& options);
Schedule OneFOneB(const GenerateOptions& options);
Schedule Interleaved1F1B(const GenerateOptions& options);  // options.virtual_stages per rank
Schedule ZeroBubbleH1(const GenerateOptions& options);
Schedule DualPipe(const GenerateOptions& options);   // options.overlap
Schedule DualPipeV(const GenerateOptions& options);  // options.overlap

}  // namespace pipeproof::generators
