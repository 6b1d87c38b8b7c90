// Chrome / Perfetto trace JSON (the Trace Event Format) of a timeline: loadable in
// ui.perfetto.dev and chrome://tracing. Each rank is a process ("rank 3") with two threads, its
// compute stream and its communication stream; each action is a complete event ("ph":"X") named
// as written ("3F4"), with its kind as category and stage, microbatch, chunk and pass as args
// (an OVERLAP_F_B also gets its forward and backward parts as nested events); each message
// between ranks is a flow ("ph":"s" on the sender's unit, "ph":"f" on the receiver's).
//
// Times: a recorded run's are real (microseconds, as the format wants). A simulation's are in cost
// units; one cost unit is drawn as `sim_unit_us` microseconds (default 1000: a unit reads as 1 ms).
#pragma once

#include <string>

#include "render/timeline_view.h"

namespace pipeproof {

struct TraceOptions {
  double sim_unit_us = 1000;
};

std::string PerfettoTrace(const TimelineView& view, const TraceOptions& options = {});

}  // namespace pipeproof
