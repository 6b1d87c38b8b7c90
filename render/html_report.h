// The mismatch report as one self-contained HTML page (inline CSS and SVG, no script, no external
// asset; opens from disk without a server): a summary, the per-tensor table of the text report
// (every tensor, worst first: mismatching elements, max abs and rel error, largest ULP distance,
// the cosine measure, the first mismatching element) and, per mismatching tensor, a heatmap of
// where in it the errors are.
//
// This is the one HTML writer: `pipeproof run --html` (render/run_report.h) and `pipeproof diff`
// (tensor dumps) both call MismatchHtml with the MismatchReport of reference/mismatch_report.h,
// heatmaps made by ComputeHeatmap from the same tensor pairs, and their own context.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "reference/dtype.h"
#include "reference/mismatch_report.h"
#include "reference/tensor_diff.h"

namespace pipeproof {

// Where in one tensor the errors are: the tensor cut into a grid of blocks of cell_rows x
// cell_cols elements (the last row and column of blocks may be smaller).
struct ErrorHeatmap {
  std::string name;  // the TensorComparison's name
  int rows = 0;      // the tensor's shape
  int cols = 0;
  int grid_rows = 0;
  int grid_cols = 0;
  int cell_rows = 1;
  int cell_cols = 1;
  double scale = 0;             // the reference's largest finite magnitude (errors relative to it)
  std::vector<double> max_abs;  // per block, row-major: the largest |run - ref| (NaN: a NaN)
  std::vector<int64_t> mismatches;  // per block: elements outside the policy
  int64_t first_index = -1;         // the first mismatching element, -1 if none

  int64_t TotalMismatches() const;
};

// Cuts run and ref (same shape; an empty heatmap otherwise) into at most max_grid_rows x
// max_grid_cols blocks. An element mismatches by the rule of CompareTensors under `policy`.
ErrorHeatmap ComputeHeatmap(std::string name, const HostTensor& run, const HostTensor& ref,
                            const ComparePolicy& policy, int max_grid_rows = 32,
                            int max_grid_cols = 48);

struct HtmlReportContext {
  std::string title = "pipeproof mismatch report";
  std::string
      headline;  // the result line, e.g. "MISMATCH: 9 of 17 tensors differ from the reference"
  std::vector<std::pair<std::string, std::string>>
      facts;  // summary rows: ("schedule", "dualpipe, ...")
  // Tensors to point at (e.g. the parameter block a corrupted message entered), and why.
  std::vector<std::string> suspects;
  std::string suspect_note;
  std::string details;    // preformatted text after the table (a hang's dump), may be empty
  int max_heatmaps = 16;  // heatmaps for the worst tensors (suspects first); the rest are counted
};

// `pipeproof diff`'s report: the table, and a heatmap per differing tensor.
std::string DiffHtml(const TensorDiff& diff, const std::vector<ErrorHeatmap>& heatmaps);

std::string MismatchHtml(const MismatchReport& report, const std::vector<ErrorHeatmap>& heatmaps,
                         const HtmlReportContext& context);

}  // namespace pipeproof
