// Lowering: give a compute-only schedule the SEND/RECV actions it needs.
#pragma once

#include <optional>
#include <string>

#include "schedule/schedule.h"

namespace pipeproof {

struct LoweringResult {
  // Set when the compute order admits an execution; then the placement is deadlock-free under
  // the `nccl` model (every rank's SEND/RECVs follow one global order of messages).
  std::optional<Schedule> schedule;
  // Otherwise why not: each stuck rank's next compute and the pass it waits for.
  std::string problem;
};

// `compute_only` must hold no SEND/RECV/WAIT/WAIT_SEND (InputError otherwise); data-parallel
// actions (UNSHARD, REDUCE_GRAD, ...) may be there and keep their place after the compute they
// follow. Each SEND goes right after the compute that makes its payload; each RECV goes before
// the compute that needs it, at the point where a dataflow run of the compute order has the
// payload ready; all ranks then meet their messages in the same order, which is what rendezvous
// semantics needs.
LoweringResult Lower(const Schedule& compute_only);

bool HasComm(const Schedule& schedule);  // any SEND/RECV/WAIT/WAIT_SEND

// The schedule as `run` executes it: as given when it has communication, else lowered (InputError
// when its compute order admits no execution). `name`, when given, gains a note when lowered.
Schedule LowerIfComputeOnly(Schedule schedule, std::string* name = nullptr);

// The waits PyTorch's runtime writes (torch.distributed.pipelining's _add_wait_send): on every
// rank without WAITs, each SEND_F is waited for (WAIT_SEND_F) right after the same stage and
// microbatch's backward (B or I) on that rank, which proves the peer took the activation; every
// other SEND at the end of the rank's program, in the order of the SENDs. Ranks with WAITs or
// WAIT_SENDs already are left as they are.
Schedule AddWaitSends(const Schedule& schedule);

}  // namespace pipeproof
