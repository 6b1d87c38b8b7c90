// RapidCheck draws shared by the property suites that judge schedules (deadlock, mutation,
// repair): a communication model, and a generated schedule with one mutation applied.
#pragma once

#include <rapidcheck.h>

#include <cstdint>
#include <string>

#include "fuzz/schedule_gen.h"
#include "fuzz/schedule_mutation.h"
#include "schedule/generate.h"
#include "verify/verify.h"

namespace pipeproof {

inline CommModel AnyModel() { return *rc::gen::element(CommModel::kNccl, CommModel::kEager); }

struct Mutant {
  GenerateOptions options;  // what was generated
  Schedule schedule;        // it, mutated
  std::string what;         // the mutation, as Mutate() describes it
};

// A generated schedule (up to `max_ranks` ranks, with its communication) with one mutation of
// class `c`; discarded where the class has nowhere to apply.
inline Mutant GenMutant(MutationClass c, int max_ranks) {
  Mutant m;
  m.options = *GenValidOptions(max_ranks, 3);
  m.options.with_comm = true;
  m.schedule = Generate(m.options);
  // The WAIT_SEND classes need WAIT_SENDs to move: PyTorch's runtime writes them on every rank
  // without WAIT groups (none on DualPipe's, which the class then skips).
  if (NeedsWaitSends(c)) RC_PRE(AddPyTorchWaitSends(m.schedule) > 0);
  m.what = Mutate(m.schedule, c, *rc::gen::arbitrary<uint64_t>());
  RC_PRE(!m.what.empty());  // nowhere to apply on this schedule (no WAIT to drop, say)
  return m;
}

}  // namespace pipeproof
