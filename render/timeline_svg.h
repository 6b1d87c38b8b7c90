// The timeline picture: ranks as rows, time left to right, one cell per action coloured by kind
// (forward, backward, input gradient, weight gradient; an overlapped F&B as one cell split in
// two inside one shared border), the microbatch number in each cell, bubbles left empty, a
// rank's chunks (DualPipe's two directions) in a lighter and a darker shade of each colour, a
// legend, and a title with the kind, size, makespan and bubble ratio. A deadlock view adds the
// blocked actions after the stuck point, the cycle among them in red with arrows.
//
// The SVG is written to be read by programs as well: every cell is a <g class="cell"> with
// data-rank, data-index, data-kind (CellKindName), data-chunk, data-stage, data-mb, data-start,
// data-end; every legend swatch a <g class="legend-item" data-kind data-chunk>; blocked actions
// <g class="stuck" data-rank data-index data-cycle-step>; communication marks <g class="comm">.
#pragma once

#include <string>
#include <string_view>

#include "render/timeline_view.h"

namespace pipeproof {

struct SvgOptions {
  bool show_comm = false;  // SEND/RECV/WAIT as thin marks under each row
  int width = 0;           // width of the time axis in pixels; 0: chosen from the makespan
};

std::string TimelineSvg(const TimelineView& view, const SvgOptions& options = {});

// The fill colour of a cell of `kind` ("forward", ...) in chunk `chunk`, as the legend shows it.
std::string_view CellFill(std::string_view kind, int chunk);

}  // namespace pipeproof
