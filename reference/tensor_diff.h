// `pipeproof diff A B`: two tensor dumps (reference/tensor_files.h) compared tensor by tensor
// with the mismatch report (reference/mismatch_report.h), as the executor compares its run with
// the reference. A is the reference (a single-device run, say), B the run under test: relative
// errors are relative to A, and "first" shows B's value against A's.
//
// Element types the report has no kind for are widened exactly before comparing (f16 and f8 to
// f32, integers and bool to f64), and their ULP distances are then taken in their own type: one
// f16 ULP is one ULP, not 2^13 of f32's. Integers wider than 2^53 are still compared bit for bit
// in exact mode. Shapes are compared as the files give them (a [4,8] tensor does not match a
// [8,4] one); the report's row/column position is that of the tensor flattened to
// [all but the last dimension, last dimension], and the note of each tensor gives its own
// N-dimensional index of the first mismatch.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "reference/mismatch_report.h"
#include "reference/tensor_files.h"

namespace pipeproof {

struct DiffOptions {
  bool exact = false;          // bit for bit; else per-type tolerances (below)
  std::optional<double> rtol;  // override every float type's default
  std::optional<double> atol;
  // A's name -> B's name. "old*=new*" maps every name that starts with "old".
  std::vector<std::pair<std::string, std::string>> renames;
};

// Parses "OLD=NEW" (InputError otherwise); a '*' may end both sides together.
std::pair<std::string, std::string> ParseRename(const std::string& text);

// The tolerance a float type gets by default: the report's for f64, f32 and bf16; for f16 rtol
// 2e-3, atol 1e-3 (about two of its epsilons, as bf16's defaults are); for f8 e4m3 rtol 0.25,
// atol 0.125 and e5m2 rtol 0.5, atol 0.25; integers and bool: exact values.
ComparePolicy DefaultPolicy(ElementType type);

struct DiffEntry {
  std::string a_name, b_name;  // empty where the tensor is missing on that side
  std::optional<ElementType> a_type, b_type;
  std::vector<int64_t> a_shape, b_shape;
  std::vector<int64_t> first_index;  // N-dimensional index of the first mismatch
  std::optional<ComparePolicy> policy;  // what A's and B's tensors were compared under, where both exist
};

struct TensorDiff {
  std::string a_path, b_path;
  int64_t a_tensors = 0, b_tensors = 0;
  uint64_t a_bytes = 0, b_bytes = 0;
  MismatchReport report;           // one TensorComparison per name, in A's order, then B's extras
  std::vector<DiffEntry> entries;  // parallel to report.tensors
  std::vector<std::string> notes;

  bool ok() const { return report.ok(); }
  std::string Text(int max_lines = 20) const;
  std::string Json()
      const;  // the report's JSON, each tensor with its files' types and shapes, plus "a", "b"
};

// Sees each pair of tensors compared element by element, as the report compared them (B as the
// run, A as the reference, flattened): how `pipeproof diff --html` draws its heatmaps.
using ComparedPair = std::function<void(const TensorComparison& comparison, const HostTensor& run,
                                        const HostTensor& ref, const ComparePolicy& policy)>;

TensorDiff DiffTensors(const TensorDump& a, const TensorDump& b, const DiffOptions& options,
                       const ComparedPair& visit = {});

}  // namespace pipeproof
