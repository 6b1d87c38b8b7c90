// What a timeline picture (render/timeline_svg.h) or a trace (render/perfetto_trace.h) shows,
// whatever it comes from: the timing simulation of a schedule, a recorded run, or a deadlock's
// partial execution. Plain values; the builders below make one, the writers draw it.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "exec/run_timeline.h"
#include "schedule/schedule.h"
#include "verify/verify.h"

namespace pipeproof {

// One action on one rank's time line.
struct TimelineCell {
  int rank = 0;
  int index = -1;     // position in the rank's program
  bool comm = false;  // SEND/RECV/WAIT or a communication unit, drawn as a thin mark
  Op op = Op::kForward;
  int stage = 0;
  int microbatch = 0;
  Task back{Op::kBackward, 0, 0};  // OVERLAP_F_B: its backward part
  // Which of its rank's chunks the action's stage is (0 for the rank's lowest stage, 1 for the
  // next...): DualPipe's two directions, interleaved 1F1B's chunks. The back part has its own.
  int chunk = 0;
  int back_chunk = 0;
  double start = 0;
  double end = 0;
  double split = 0.5;  // OVERLAP_F_B: the share of the cell drawn as its forward part
  std::string label;   // the action as written: "3F4", "(0F7;15B13)OVERLAP_F_B", "WAIT"
  std::string detail;  // more for tooltips and trace arguments: a unit's ops, a payload
  std::string pass;    // recorded runs: "train" or "inference"; empty for simulations
};

// A message from one rank to another, for flow arrows.
struct TimelineMessage {
  int from = 0;
  int to = 0;
  double sent = 0;      // when its send started
  double received = 0;  // when its receive completed
  std::string what;     // "activation 2->3 mb 5"
  int send_cell = -1;   // index into cells, -1 if not drawn
  int recv_cell = -1;
};

// An edit of the communication (pipeproof repair's): where a moved or added op now stands.
struct EditMark {
  int rank = 0;
  int index = 0;      // in the rank's program, as drawn
  std::string kind;   // "move" or "add"
  std::string text;   // "rank 1: move 1RECV_F0 from [4] to [2]"
};

// A blocked action of a deadlock.
struct StuckAction {
  int rank = 0;
  int index = 0;
  std::string action;
  std::string waits_for;  // the cycle's explanation; empty for a rank's blocked action off it
  int cycle_step = -1;    // 0, 1, ... around the cycle; -1: blocked, but not on the cycle
};

struct TimelineView {
  std::string title;     // "dualpipe · 8 ranks · 16 stages · 20 microbatches"
  std::string subtitle;  // "makespan 66 · bubble ratio 9.1% · simulated ..."
  int ranks = 0;
  int microbatches = 0;
  // How chunks are named in the legend: "direction" (DualPipe, DualPipeV: two stages per rank
  // on a V), "chunk" (interleaved), or empty when every rank holds one stage.
  std::string chunk_name;
  int chunks = 1;  // the most chunks any rank holds
  std::vector<std::string>
      chunk_notes;         // per chunk, what it covers ("stages 0-7, microbatches 0-9")
  std::string time_unit;   // "" for cost units, "ms" for a recorded run
  double time_origin = 0;  // the time drawn at the left edge
  double makespan = 0;     // the time drawn at the right edge, from time_origin
  std::optional<double> bubble_ratio;
  std::vector<TimelineCell> cells;  // compute cells and communication marks
  std::vector<TimelineMessage> messages;
  // Deadlock: the blocked actions, and when the last action that could finish finished.
  std::vector<StuckAction> stuck;
  double stuck_at = 0;
  std::vector<EditMark> edits;      // --diff: marked on the communication strip
  std::vector<std::string> notes;  // lines under the picture
};

// The chunk index of each stage on its rank (see TimelineCell::chunk).
std::vector<int> StageChunks(const Schedule& schedule);

// The timing simulation of `schedule` (with `Simulate`'s timeline of it).
TimelineView SimulatedView(const Schedule& schedule, const Timeline& timeline, const Costs& costs,
                           CommModel model, StreamLayout streams = StreamLayout::kRank);

// A recorded run. `pass`: "train", "inference", or empty for both. `schedule` is the schedule
// that ran (its topology names the chunks); `name` titles the picture ("as it ran on threads").
TimelineView RecordedView(const Schedule& schedule, const RunTimeline& run, std::string_view pass,
                          std::string_view name);

// The recorded timeline in a `pipeproof run --report` file's text, and the transport it ran on.
// Throws std::runtime_error saying what is missing.
RunTimeline RunTimelineFromReport(std::string_view report_json, std::string* transport);

// A deadlocked schedule: the partial execution up to the stuck point (the simulation's timeline,
// whose blocked actions never end) and the cycle of blocked actions Verify found.
TimelineView DeadlockView(const Schedule& schedule, const Timeline& partial,
                          const std::vector<CycleStep>& cycle, CommModel model,
                          StreamLayout streams = StreamLayout::kRank);

// The picture of what Verify found: the timing simulation when the schedule runs to its end, the
// deadlock view when it does not (with the report's cycle). `input` is what was verified; the
// report's positions are in its lowered form when it was compute-only, and so is the picture.
// Throws InputError when the report has neither (the structure check failed).
TimelineView VerifiedView(const Schedule& input, const VerifyReport& report);

// `pipeproof render`'s picture of a schedule: its simulation under `model`, `streams` and
// `costs`, or, when it deadlocks, the deadlock view (found by Verify without Z3).
TimelineView ScheduleView(const Schedule& schedule, CommModel model, const Costs& costs,
                          StreamLayout streams = StreamLayout::kRank);

// `repaired` as ScheduleView draws it, with the edits that turn `original` into it (verify/
// repair.h's CommunicationDiff) marked where the moved and added ops now stand; removed ops have
// no place in it, so the notes list them. InputError when the two differ in their computes.
TimelineView DiffView(const Schedule& original, const Schedule& repaired, CommModel model,
                      const Costs& costs, StreamLayout streams = StreamLayout::kRank);

// "forward", "backward", "input-grad", "weight-grad", "overlap-f-b", "send", "recv", "wait",
// "wait-send", "data-parallel": the kind a cell is drawn (and its trace category) as.
std::string_view CellKindName(Op op);

}  // namespace pipeproof
