// Whether a run fits in this machine's memory, decided before anything is
// allocated. A size that passes every per-tensor limit can still ask for
// hundreds of GiB in all (wide layers, many stages, activations held by a deep
// pipeline); such a run is refused as bad input (exit 2) with the estimate,
// rather than left to the kernel's OOM killer.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>

#include "reference/stage_model.h"
#include "schedule/schedule.h"

namespace pipeproof {

// A lower bound on what one process holds at its peak, in bytes: the weights
// and gradients of every stage, the activations and weight-gradient stashes the
// verifier's memory check counted per rank, and the sequential reference (which
// runs in the process that compares): its weights, gradients and one
// microbatch's activations along a whole route. Buffers in flight, inputs,
// labels and outputs come on top, so a run refused by this estimate surely does
// not fit.
struct MemoryEstimate {
  int64_t ranks_bytes = 0;      // the ranks this process runs
  int64_t reference_bytes = 0;  // the sequential reference
  // The verification before the run (VerifierMemoryBytes): its peak has passed when the run's
  // tensors are allocated, so the process needs the larger of the two.
  int64_t verifier_bytes = 0;
  int64_t total() const { return std::max(verifier_bytes, ranks_bytes + reference_bytes); }
};

// `activation_peak` and `stash_peak`: per rank, as VerifyReport::memory has
// them. `all_ranks_here`: true when every rank runs in this process (threads),
// false for one rank per process (MPI), where the largest rank counts.
MemoryEstimate EstimateRunMemory(const Schedule& schedule, const ModelConfig& model,
                                 std::span<const int> activation_peak,
                                 std::span<const int> stash_peak, bool all_ranks_here);

// MemAvailable of /proc/meminfo in bytes; the environment variable
// PIPEPROOF_MEMORY_LIMIT (bytes) overrides it (InputError when it is not a positive number); -1
// when neither says.
int64_t AvailableMemoryBytes();

// Throws InputError naming the estimate, what is available and what to change,
// when the estimate exceeds what is available; does nothing when the available
// memory is unknown.
void CheckRunFitsInMemory(const MemoryEstimate& estimate, const ModelConfig& model);
// The same for the verification alone, before it runs (it needs no stage model).
void CheckVerifierFitsInMemory(int64_t verifier_bytes, int64_t actions);

std::string FormatBytes(int64_t bytes);  // "1.5 GiB", "512 KiB", "100 B"

}  // namespace pipeproof
