#include "render/timeline_svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <map>

#include "render/svg_text.h"

namespace pipeproof {
namespace {

using render_internal::Escape;
using render_internal::Num;

// Per kind, the shades of its chunks: chunk 0 (DualPipe's direction 0) the base colour, chunk 1
// a darker one (white text), chunk 2 a paler one; more chunks repeat them.
struct KindStyle {
  std::string_view kind;
  std::string_view name;  // in the legend
  std::array<std::string_view, 3> fill;
};
constexpr KindStyle kComputeStyles[] = {
    {"forward", "Forward (F)", {"#F6B73C", "#C27612", "#FBE1A6"}},
    {"backward", "Backward (B)", {"#7BD35B", "#3A8F2D", "#C6EFB3"}},
    {"input-grad", "Backward for input (I)", {"#45C4B0", "#16797A", "#A8E6DC"}},
    {"weight-grad", "Backward for weights (W)", {"#86BFFF", "#3A78C9", "#CAE3FF"}},
};
constexpr std::string_view kOverlapName = "Overlapped forward & backward (F&B)";
constexpr std::string_view kShadeNames[] = {"lighter", "darker", "palest"};

struct CommStyle {
  std::string_view kind;
  std::string_view name;
  std::string_view fill;
};
constexpr CommStyle kCommStyles[] = {
    {"send", "SEND", "#B23B3B"},
    {"recv", "RECV", "#2F5DA8"},
    {"wait", "WAIT (group posted and waited for)", "#9A9A9A"},
    {"wait-send", "WAIT_SEND (the rank waits for its send)", "#C98A1B"},
    {"data-parallel", "UNSHARD, RESHARD, REDUCE_GRAD (data-parallel group)", "#5E8C5A"},
};

constexpr std::string_view kGridLine = "#E4E4E4";
constexpr double kCommMarkHeight = 4.5;
constexpr std::string_view kEditStroke = "#E8590C";  // render --diff: what repair moved or added
constexpr std::string_view kCellStroke = "#262626";
constexpr std::string_view kStuckRed = "#D32F2F";

bool DarkShade(int chunk) { return chunk % 3 == 1; }

// Where things go on the page.
struct Layout {
  double left = 88;  // the row labels' column
  double top = 0;    // the grid's top
  double row_h = 26;
  double pitch = 26;  // row_h plus the communication strip
  double unit_px = 20;
  double origin = 0;
  double grid_w = 0;
  double stuck_x = 0;  // deadlock: where the blocked actions' column starts
  double stuck_w = 0;
  double stuck_box_w = 0;

  double X(double t) const { return left + (t - origin) * unit_px; }
  double RowY(int rank) const { return top + rank * pitch; }
  double GridBottom(int ranks) const { return top + ranks * pitch; }
};

// 1, 2 or 5 times a power of ten, giving about `target` steps over `span`.
double NiceStep(double span, int target) {
  if (span <= 0) return 1;
  const double raw = span / target;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * power >= raw) return m * power;
  }
  return 10 * power;
}

std::string Fmt(double x) { return fmt::format("{:g}", x); }

// Approximate width of text in DejaVu Sans at `size` px (the SVG does not measure).
double TextWidth(std::string_view text, double size) {
  return static_cast<double>(text.size()) * size * 0.6;
}

class SvgBuilder {
 public:
  SvgBuilder(const TimelineView& view, const SvgOptions& options)
      : view_(view), options_(options) {}

  std::string Build() {
    PlanLayout();
    body_ += Title();
    body_ += Grid();
    for (const TimelineCell& cell : view_.cells) {
      if (!cell.comm) body_ += Cell(cell);
    }
    if (options_.show_comm) {
      for (const TimelineCell& cell : view_.cells) {
        if (cell.comm) body_ += CommMark(cell);
      }
      if (!view_.edits.empty()) {
        std::map<std::pair<int, int>, const TimelineCell*> comm_cells;  // (rank, index)
        for (const TimelineCell& c : view_.cells) {
          if (c.comm) comm_cells.emplace(std::pair{c.rank, c.index}, &c);
        }
        for (const EditMark& edit : view_.edits) {
          if (auto it = comm_cells.find({edit.rank, edit.index}); it != comm_cells.end()) {
            body_ += EditOutline(edit, *it->second);
          }
        }
      }
    }
    if (!view_.stuck.empty()) body_ += Stuck();
    body_ += Axis();
    double y = layout_.GridBottom(view_.ranks) + 46;
    body_ += Legend(y);
    for (const std::string& note : view_.notes) {
      body_ += fmt::format("<text class=\"note\" x=\"{}\" y=\"{}\" font-size=\"12\">{}</text>\n",
                           Num(layout_.left), Num(y), Escape(note));
      y += 17;
    }
    width_ = std::max(width_, layout_.stuck_x + layout_.stuck_w + 24);
    const double height = y + 10;
    std::string svg = fmt::format(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} "
        "{1}\" "
        "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
        "<title>{2}</title>\n"
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" "
        "markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" "
        "fill=\"{3}\"/></marker></defs>\n"
        "<rect x=\"0\" y=\"0\" width=\"{0}\" height=\"{1}\" fill=\"#FFFFFF\"/>\n",
        Num(width_), Num(height), Escape(view_.title), kStuckRed);
    return svg + body_ + "</svg>\n";
  }

 private:
  void PlanLayout() {
    Layout& l = layout_;
    l.top = 74;
    // Room for the row labels and the axis label, whichever is wider.
    l.left =
        std::max({88.0, TextWidth(fmt::format("Rank {}", view_.ranks - 1), 14) * 1.1 + 16,
                  TextWidth(view_.time_unit.empty() ? "Time >" : "Time (ms) >", 13) * 1.1 + 16});
    l.row_h = view_.ranks <= 16 ? 26 : view_.ranks <= 48 ? 16 : 10;
    // A deadlock's arrows run between the rows: give them room.
    l.pitch = l.row_h + (options_.show_comm ? 7 : 0) + (view_.stuck.empty() ? 0 : 12);
    l.origin = view_.time_origin;
    const double span = std::max(view_.makespan, 1e-9);
    double grid_w = options_.width;
    if (grid_w <= 0) {
      // A cost unit as wide as two digits need, as long as the whole fits about two screens.
      grid_w = view_.time_unit.empty() ? std::min(span * 26, 2600.0) : 1600.0;
    }
    l.unit_px = grid_w / span;
    l.grid_w = grid_w;
    l.stuck_x = l.left + grid_w;
    if (!view_.stuck.empty()) {
      std::map<int, int> per_rank;
      double widest = 0;
      for (const StuckAction& s : view_.stuck) {
        ++per_rank[s.rank];
        widest = std::max(widest, TextWidth(StuckText(s), 12) * 1.1 + 14);
      }
      int most = 0;
      for (const auto& [rank, n] : per_rank) most = std::max(most, n);
      l.stuck_box_w = std::max(widest, 80.0);
      l.stuck_w = 24 + most * (l.stuck_box_w + kStuckGap) + 24;
    }
    width_ = std::max({l.left + grid_w + 24, l.left + TextWidth(view_.title, 21) * 1.1 + 24,
                       l.left + TextWidth(view_.subtitle, 13) + 24});
  }

  static constexpr double kStuckGap = 44;  // between a rank's blocked actions: room for arrows

  static std::string StuckText(const StuckAction& s) {
    const std::string text = fmt::format("[{}] {}", s.index, s.action);
    return s.cycle_step >= 0 ? fmt::format("{}: {}", s.cycle_step + 1, text) : text;
  }

  std::string Title() const {
    return fmt::format(
        "<text class=\"title\" x=\"{0}\" y=\"30\" font-size=\"21\" "
        "font-weight=\"bold\">{1}</text>\n"
        "<text class=\"subtitle\" x=\"{0}\" y=\"54\" font-size=\"13\" "
        "fill=\"#333333\">{2}</text>\n",
        Num(layout_.left), Escape(view_.title), Escape(view_.subtitle));
  }

  // Row labels, row backgrounds (white: a bubble is what stays empty) and light time lines.
  std::string Grid() const {
    const Layout& l = layout_;
    std::string out = "<g class=\"grid\">\n";
    const double bottom = l.GridBottom(view_.ranks);
    const double right = l.left + l.grid_w;
    for (int r = 0; r < view_.ranks; ++r) {
      const double y = l.RowY(r);
      out += fmt::format(
          "<text class=\"rank-label\" x=\"{}\" y=\"{}\" font-size=\"{}\" font-weight=\"bold\" "
          "text-anchor=\"end\">Rank {}</text>\n",
          Num(l.left - 8), Num(y + l.row_h / 2 + std::min(l.row_h * 0.5, 14.0) * 0.36),
          Num(std::min(l.row_h * 0.5, 14.0)), r);
    }
    // Vertical lines: every cost unit when they are far enough apart, else at the axis ticks.
    const bool every_unit = view_.time_unit.empty() && l.unit_px >= 6;
    const double step =
        every_unit ? 1 : NiceStep(view_.makespan, std::max(2, static_cast<int>(l.grid_w / 35)));
    for (double t = 0; t <= view_.makespan + 1e-9; t += step) {
      const double x = l.X(l.origin + t);
      out += fmt::format(
          "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"{3}\" stroke-width=\"1\"/>\n",
          Num(x), Num(l.top), Num(bottom), kGridLine);
    }
    for (int r = 0; r <= view_.ranks; ++r) {
      const double y = r == view_.ranks ? bottom : l.RowY(r);
      out += fmt::format(
          "<line x1=\"{0}\" y1=\"{2}\" x2=\"{1}\" y2=\"{2}\" stroke=\"#BDBDBD\" "
          "stroke-width=\"1\"/>\n",
          Num(l.left), Num(right), Num(y));
    }
    out += fmt::format(
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"{}\" "
        "stroke-width=\"1.2\"/>\n",
        Num(l.left), Num(l.top), Num(l.grid_w), Num(bottom - l.top), kCellStroke);
    return out + "</g>\n";
  }

  // A number centred in [x, x + w] of a row, if it fits.
  std::string Label(double x, double w, double y, int number, bool dark) const {
    const std::string text = std::to_string(number);
    double size = std::min(layout_.row_h * 0.56, 14.0);
    while (size >= 7 && TextWidth(text, size) + 2 > w) size -= 1;
    if (size < 7) return "";
    return fmt::format(
        "<text x=\"{}\" y=\"{}\" font-size=\"{}\" text-anchor=\"middle\" fill=\"{}\">{}</text>",
        Num(x + w / 2), Num(y + layout_.row_h / 2 + size * 0.36), Num(size),
        dark ? "#FFFFFF" : "#111111", text);
  }

  std::string Cell(const TimelineCell& c) const {
    const Layout& l = layout_;
    const double x = l.X(c.start);
    const double w = std::max((c.end - c.start) * l.unit_px, 1.0);
    const double y = l.RowY(c.rank);
    const std::string_view kind = CellKindName(c.op);
    std::string out = fmt::format(
        "<g class=\"cell\" data-rank=\"{}\" data-index=\"{}\" data-kind=\"{}\" data-chunk=\"{}\" "
        "data-stage=\"{}\" "
        "data-mb=\"{}\" data-start=\"{}\" data-end=\"{}\"",
        c.rank, c.index, kind, c.chunk, c.stage, c.microbatch, Fmt(c.start), Fmt(c.end));
    if (c.op == Op::kOverlapFB) {
      out += fmt::format(
          " data-back-kind=\"{}\" data-back-chunk=\"{}\" data-back-stage=\"{}\" "
          "data-back-mb=\"{}\"",
          CellKindName(c.back.op), c.back_chunk, c.back.stage, c.back.microbatch);
    }
    out +=
        fmt::format("><title>{} (rank {}, {} to {}{})</title>", Escape(c.label), c.rank,
                    Fmt(c.start), Fmt(c.end), view_.time_unit.empty() ? "" : " " + view_.time_unit);
    const double stroke =
        l.unit_px * 1 >= 4 ? 0.7 : 0.0;  // borders only where cells are wide enough
    if (c.op != Op::kOverlapFB) {
      out += fmt::format(
          "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"{}\" "
          "stroke-width=\"{}\"/>",
          Num(x), Num(y), Num(w), Num(l.row_h), CellFill(kind, c.chunk), kCellStroke, Num(stroke));
      out += Label(x, w, y, c.microbatch, DarkShade(c.chunk));
    } else {
      // One unit, two halves: the forward part and the backward part, one shared border.
      const double wf = w * c.split;
      const std::string_view back_kind = CellKindName(c.back.op);
      out += fmt::format(
          "<rect class=\"part-forward\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>",
          Num(x), Num(y), Num(wf), Num(l.row_h), CellFill("forward", c.chunk));
      out += fmt::format(
          "<rect class=\"part-backward\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" "
          "fill=\"{}\"/>",
          Num(x + wf), Num(y), Num(w - wf), Num(l.row_h), CellFill(back_kind, c.back_chunk));
      out += fmt::format(
          "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#000000\" "
          "stroke-width=\"{}\"/>",
          Num(x + 0.6), Num(y + 0.6), Num(std::max(w - 1.2, 0.5)), Num(l.row_h - 1.2),
          Num(stroke > 0 ? 1.8 : 0));
      out += Label(x, wf, y, c.microbatch, DarkShade(c.chunk));
      out += Label(x + wf, w - wf, y, c.back.microbatch, DarkShade(c.back_chunk));
    }
    return out + "</g>\n";
  }

  // An edit (render --diff): an outline around the moved or added op's communication mark `c`.
  std::string EditOutline(const EditMark& e, const TimelineCell& c) const {
    const Layout& l = layout_;
    const double w = std::max((c.end - c.start) * l.unit_px, 1.5);
    return fmt::format(
        "<g class=\"edit\" data-rank=\"{}\" data-index=\"{}\" data-kind=\"{}\"><title>{}</title>"
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"{}\" "
        "stroke-width=\"1.5\"/></g>\n",
        e.rank, e.index, e.kind, Escape(e.text), Num(l.X(c.start) - 2), Num(l.RowY(c.rank) + l.row_h - 0.5),
        Num(w + 4), Num(kCommMarkHeight + 4), kEditStroke);
  }

  std::string CommMark(const TimelineCell& c) const {
    const Layout& l = layout_;
    const std::string_view kind = CellKindName(c.op);
    std::string_view fill = "#9A9A9A";
    for (const CommStyle& s : kCommStyles) {
      if (s.kind == kind) fill = s.fill;
    }
    const double x = l.X(c.start);
    const double w = std::max((c.end - c.start) * l.unit_px, 1.5);
    const double y = l.RowY(c.rank) + l.row_h + 1.5;
    return fmt::format(
        "<g class=\"comm\" data-rank=\"{}\" data-index=\"{}\" data-kind=\"{}\"><title>{}{}{} ({} "
        "to {})</title>"
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/></g>\n",
        c.rank, c.index, kind, Escape(c.label), c.detail.empty() ? "" : ": ", Escape(c.detail),
        Fmt(c.start), Fmt(c.end), Num(x), Num(y), Num(w), Num(kCommMarkHeight), fill);
  }

  // The deadlock: a line at the stuck point, then each rank's blocked actions as boxes, the
  // cycle's in red and numbered, with arrows from each to the one it waits for.
  std::string Stuck() const {
    const Layout& l = layout_;
    std::string out = "<g class=\"deadlock\">\n";
    const double x_line = l.X(view_.stuck_at);
    out += fmt::format(
        "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"{3}\" stroke-width=\"2\" "
        "stroke-dasharray=\"6,4\"/>\n"
        "<text x=\"{4}\" y=\"{5}\" font-size=\"12\" fill=\"{3}\" font-weight=\"bold\">stuck at t = "
        "{6}</text>\n",
        Num(x_line), Num(l.top - 6), Num(l.GridBottom(view_.ranks) + 4), kStuckRed, Num(x_line + 4),
        Num(l.top - 8), Fmt(view_.stuck_at));
    std::map<int, std::vector<const StuckAction*>> by_rank;
    for (const StuckAction& s : view_.stuck) by_rank[s.rank].push_back(&s);
    struct Box {
      double x, y, w, h;
    };
    std::map<int, Box> box_of_step;
    for (auto& [rank, list] : by_rank) {
      std::sort(list.begin(), list.end(),
                [](const StuckAction* a, const StuckAction* b) { return a->index < b->index; });
      for (size_t k = 0; k < list.size(); ++k) {
        const StuckAction& s = *list[k];
        const Box box{l.stuck_x + 24 + k * (l.stuck_box_w + kStuckGap), l.RowY(rank) + 1,
                      l.stuck_box_w, l.row_h - 2};
        const bool cycle = s.cycle_step >= 0;
        out += fmt::format(
            "<g class=\"stuck\" data-rank=\"{}\" data-index=\"{}\" "
            "data-cycle-step=\"{}\"><title>rank {} [{}] {}{}{}</title>"
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"3\" fill=\"{}\" stroke=\"{}\" "
            "stroke-width=\"{}\"{}/>",
            rank, s.index, s.cycle_step, rank, s.index, Escape(s.action),
            cycle ? " " : ": blocked, not on the cycle", Escape(s.waits_for), Num(box.x),
            Num(box.y), Num(box.w), Num(box.h), cycle ? "#FFE1E1" : "#F0F0F0",
            cycle ? kStuckRed : "#8A8A8A", cycle ? "2.5" : "1.2",
            cycle ? "" : " stroke-dasharray=\"4,3\"");
        const double size = std::min(box.h * 0.6, 12.0);
        out += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"{}\" fill=\"{}\"{}>{}</text></g>\n",
                           Num(box.x + 7), Num(box.y + box.h / 2 + size * 0.36), Num(size),
                           cycle ? "#8E1010" : "#555555", cycle ? " font-weight=\"bold\"" : "",
                           Escape(StuckText(s)));
        if (cycle) box_of_step[s.cycle_step] = box;
      }
    }
    // Arrows, edge to edge: step k waits for step k+1 (the last for the first). Between rows
    // from the facing edges; within a row an arc over the boxes.
    const int n = static_cast<int>(box_of_step.size());
    double lowest = 0;  // the lowest row of the cycle: its arcs go below, away from the others
    for (const auto& [step, box] : box_of_step) lowest = std::max(lowest, box.y);
    for (int k = 0; k < n && n > 1; ++k) {
      const Box& a = box_of_step[k];
      const Box& b = box_of_step[(k + 1) % n];
      double x1, y1, x2, y2, cx, cy;
      if (a.y == b.y) {
        const bool below =
            a.y == lowest && std::any_of(box_of_step.begin(), box_of_step.end(),
                                         [&](const auto& e) { return e.second.y < a.y; });
        x1 = a.x + a.w * (b.x < a.x ? 0.3 : 0.7);
        x2 = b.x + b.w * (b.x < a.x ? 0.7 : 0.3);
        y1 = y2 = below ? a.y + a.h : a.y;
        cx = (x1 + x2) / 2;
        cy = below ? a.y + a.h + l.pitch * 0.55 : a.y - l.pitch * 0.55;
      } else {
        const bool down = b.y > a.y;
        x1 = a.x + a.w / 2;
        x2 = b.x + b.w / 2;
        y1 = down ? a.y + a.h : a.y;
        y2 = down ? b.y : b.y + b.h;
        cx = (x1 + x2) / 2 + (down ? 1 : -1) * 14;
        cy = (y1 + y2) / 2;
      }
      out += fmt::format(
          "<path class=\"waits-for\" d=\"M{},{} Q{},{} {},{}\" fill=\"none\" stroke=\"{}\" "
          "stroke-width=\"1.8\" "
          "marker-end=\"url(#arrow)\"/>\n",
          Num(x1), Num(y1), Num(cx), Num(cy), Num(x2), Num(y2), kStuckRed);
    }
    return out + "</g>\n";
  }

  std::string Axis() const {
    const Layout& l = layout_;
    const double y = l.GridBottom(view_.ranks);
    std::string out = "<g class=\"axis\">\n";
    const double step = NiceStep(view_.makespan, std::max(2, static_cast<int>(l.grid_w / 70)));
    for (double t = 0; t <= view_.makespan + 1e-9; t += step) {
      const double x = l.X(l.origin + t);
      out += fmt::format(
          "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#444444\"/>"
          "<text x=\"{0}\" y=\"{3}\" font-size=\"11\" text-anchor=\"middle\" "
          "fill=\"#444444\">{4}</text>\n",
          Num(x), Num(y), Num(y + 5), Num(y + 17), Fmt(std::round(t / step) * step));
    }
    out += fmt::format(
        "<text x=\"{}\" y=\"{}\" font-size=\"13\" font-weight=\"bold\" text-anchor=\"end\">Time{} "
        "&#8594;</text>\n",
        Num(l.left - 8), Num(y + 17), view_.time_unit.empty() ? "" : " (" + view_.time_unit + ")");
    return out + "</g>\n";
  }

  // The swatches of every kind present, one per chunk, then what the shades mean.
  std::string Legend(double& y) {
    std::map<std::string_view, bool> present;
    for (const TimelineCell& c : view_.cells) {
      if (c.comm && !options_.show_comm) continue;
      present[CellKindName(c.op)] = true;
      if (c.op == Op::kOverlapFB) present[CellKindName(c.back.op)] = true;
    }
    const int chunks = std::max(view_.chunks, 1);
    const double sw = 20, sh = 15, max_x = std::max(width_ - 20, 900.0);
    double x = layout_.left;
    std::string out = "<g class=\"legend\">\n";
    auto place = [&](double w) {
      if (x + w > max_x && x > layout_.left) {
        x = layout_.left;
        y += 24;
      }
      const double at = x;
      x += w;
      return at;
    };
    auto swatch = [&](std::string_view kind, int chunk, std::string_view fill, double at) {
      return fmt::format(
          "<g class=\"legend-item\" data-kind=\"{}\" data-chunk=\"{}\"><rect x=\"{}\" y=\"{}\" "
          "width=\"{}\" "
          "height=\"{}\" fill=\"{}\" stroke=\"{}\" stroke-width=\"0.8\"/></g>",
          kind, chunk, Num(at), Num(y - sh + 3), Num(sw), Num(sh), fill, kCellStroke);
    };
    auto label = [&](std::string_view text, double at) {
      return fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"13\">{}</text>\n", Num(at), Num(y),
                         Escape(text));
    };
    for (const KindStyle& k : kComputeStyles) {
      if (!present.count(k.kind)) continue;
      const double at = place(chunks * (sw + 2) + 6 + TextWidth(k.name, 13) + 22);
      for (int c = 0; c < chunks; ++c) out += swatch(k.kind, c, k.fill[c % 3], at + c * (sw + 2));
      out += label(k.name, at + chunks * (sw + 2) + 6);
    }
    if (present.count("overlap-f-b")) {
      const double at = place(chunks * (2 * sw + 4) + 6 + TextWidth(kOverlapName, 13) + 22);
      for (int c = 0; c < chunks; ++c) {
        const double sx = at + c * (2 * sw + 4);
        out += fmt::format(
            "<g class=\"legend-item\" data-kind=\"overlap-f-b\" data-chunk=\"{}\"><rect x=\"{}\" "
            "y=\"{}\" width=\"{}\" "
            "height=\"{}\" fill=\"{}\"/><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" "
            "fill=\"{}\"/><rect x=\"{}\" "
            "y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#000000\" "
            "stroke-width=\"1.6\"/></g>",
            c, Num(sx), Num(y - sh + 3), Num(sw * 2 / 3), Num(sh), CellFill("forward", c),
            Num(sx + sw * 2 / 3), Num(y - sh + 3), Num(sw * 4 / 3), Num(sh),
            CellFill("backward", c), Num(sx), Num(y - sh + 3), Num(2 * sw), Num(sh));
      }
      out += label(kOverlapName, at + chunks * (2 * sw + 4) + 6);
    }
    {
      const std::string_view name = "Bubble (idle)";
      const double at = place(sw + 6 + TextWidth(name, 13) + 22);
      out += swatch("bubble", 0, "#FFFFFF", at);
      out += label(name, at + sw + 6);
    }
    if (options_.show_comm) {
      for (const CommStyle& s : kCommStyles) {
        if (!present.count(s.kind)) continue;
        const double at = place(sw + 6 + TextWidth(s.name, 13) + 22);
        out += fmt::format(
            "<g class=\"legend-item\" data-kind=\"{}\" data-chunk=\"0\"><rect x=\"{}\" y=\"{}\" "
            "width=\"{}\" "
            "height=\"5\" fill=\"{}\"/></g>",
            s.kind, Num(at), Num(y - 5), Num(sw), s.fill);
        out += label(s.name, at + sw + 6);
      }
    }
    if (options_.show_comm && !view_.edits.empty()) {
      const std::string_view name = "edited: moved or added";
      const double at = place(sw + 6 + TextWidth(name, 13) + 22);
      out += fmt::format(
          "<g class=\"legend-item\" data-kind=\"edit\" data-chunk=\"0\"><rect x=\"{}\" y=\"{}\" "
          "width=\"{}\" height=\"7\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"/></g>",
          Num(at), Num(y - 7), Num(sw), kEditStroke);
      out += label(name, at + sw + 6);
    }
    if (!view_.stuck.empty()) {
      const std::string_view name = "blocked: on the deadlock cycle / elsewhere";
      const double at = place(2 * sw + 10 + TextWidth(name, 13) + 22);
      out += fmt::format(
          "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"3\" fill=\"#FFE1E1\" "
          "stroke=\"{}\" stroke-width=\"2.5\"/>"
          "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"3\" fill=\"#F0F0F0\" "
          "stroke=\"#8A8A8A\" "
          "stroke-dasharray=\"4,3\"/>",
          Num(at), Num(y - sh + 3), Num(sw), Num(sh), kStuckRed, Num(at + sw + 4), Num(y - sh + 3),
          Num(sw), Num(sh));
      out += label(name, at + 2 * sw + 10);
    }
    y += 22;
    if (chunks > 1 && !view_.chunk_name.empty()) {
      std::string text = "Shades: ";
      for (int c = 0; c < chunks; ++c) {
        if (c > 0) text += "; ";
        text += fmt::format("{} = {} {}", kShadeNames[c % 3], view_.chunk_name, c);
        if (c < static_cast<int>(view_.chunk_notes.size()))
          text += " (" + view_.chunk_notes[c] + ")";
      }
      text += ". Numbers are microbatches; an F&B cell shows its forward's, then its backward's.";
      out += fmt::format(
          "<text class=\"shades\" x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#333333\">{}</text>\n",
          Num(layout_.left), Num(y), Escape(text));
      width_ = std::max(width_, layout_.left + TextWidth(text, 12) + 20);
      y += 22;
    } else {
      const std::string text =
          "Numbers are microbatches; an F&B cell shows its forward's, then its backward's.";
      out += fmt::format(
          "<text class=\"shades\" x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#333333\">{}</text>\n",
          Num(layout_.left), Num(y), Escape(text));
      y += 22;
    }
    return out + "</g>\n";
  }

  const TimelineView& view_;
  const SvgOptions& options_;
  Layout layout_;
  double width_ = 0;
  std::string body_;
};

}  // namespace

std::string_view CellFill(std::string_view kind, int chunk) {
  for (const KindStyle& k : kComputeStyles) {
    if (k.kind == kind) return k.fill[static_cast<size_t>(std::max(chunk, 0)) % 3];
  }
  for (const CommStyle& s : kCommStyles) {
    if (s.kind == kind) return s.fill;
  }
  return "#CCCCCC";
}

std::string TimelineSvg(const TimelineView& view, const SvgOptions& options) {
  return SvgBuilder(view, options).Build();
}

}  // namespace pipeproof
