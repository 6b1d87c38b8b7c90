// RapidCheck generators of schedules, shared by the property suites.
#pragma once

#include <rapidcheck.h>

#include <ostream>

#include "schedule/formats.h"
#include "schedule/generate.h"
#include "schedule/schedule.h"

namespace pipeproof {

// How RapidCheck prints counterexamples (found by argument-dependent lookup).
inline void showValue(const Schedule& s, std::ostream& os) { os << "\n" << WritePps(s); }
inline void showValue(const GenerateOptions& o, std::ostream& os) {
  os << o.kind << " --ranks " << o.ranks << " --microbatches " << o.microbatches
     << (o.overlap ? "" : " --no-overlap") << " --virtual-stages " << o.virtual_stages
     << (o.with_comm ? "" : " (compute only)");
}

// Any stream layout.
inline StreamLayout AnyLayout() {
  return *rc::gen::element(StreamLayout::kRank, StreamLayout::kPair, StreamLayout::kEdge);
}

// A valid size for `kind` with up to `max_ranks` ranks and up to `max_factor` x ranks
// microbatches (each kind's own rules respected).
rc::Gen<GenerateOptions> GenValidOptions(int max_ranks, int max_factor);

// Any action on a topology of `stages` stages and `microbatches` microbatches, well formed or not.
rc::Gen<Action> GenAction(int stages, int microbatches);

// A schedule with a random topology (placement, shared params, routes) and random programs:
// readable by the .pps and JSON readers, not necessarily runnable.
rc::Gen<Schedule> GenArbitrarySchedule();

// A schedule that passes the structure check and is otherwise random: a random topology (2 to 5
// ranks, random placement, routes forwards or backwards), every compute once, in a random order
// that respects the data dependencies across the whole step, a SEND somewhere after each
// producer and a RECV somewhere before each consumer, on some ranks WAITs at random places, on
// some WAIT_SENDs somewhere after their SENDs, and on some the data-parallel actions around each
// stage. Some of these run, some deadlock under one model, layout or all, some read an input too
// early. Every choice is a RapidCheck value, so that a counterexample shrinks to a small program
// (fewer ranks, microbatches and WAITs, computes in their simplest order); schedule_gen_test.cpp
// checks that it does.
rc::Gen<Schedule> GenWellFormedSchedule();

}  // namespace pipeproof
