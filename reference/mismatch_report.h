// The mismatch report: how far one set of tensors is from another, tensor by tensor. The executor
// compares its run with the sequential reference through it; `pipeproof diff` (tensor dumps)
// reuses it as it is. Plain values: build one with CompareTensors, print it with Text or Json.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "reference/dtype.h"

namespace pipeproof {

// exact: every element must have the same bits (+0 and -0 differ; a NaN matches only the same
// NaN). tolerance: |run - ref| <= rtol |ref| + atol max|ref| elementwise, NaN never matches. The
// absolute part is scaled by the reference tensor's largest magnitude, so one setting fits
// tensors of any scale (gradients of a mean loss are small; an absolute 1e-7 would hide a wrong
// element among them). Defaults per dtype, a few hundred times the error that summing in another
// order makes at these sizes: f64 rtol 1e-9 atol 1e-12, f32 rtol 1e-4 atol 1e-5, bf16 rtol 1.6e-2
// atol 1e-2.
struct ComparePolicy {
  enum class Mode { kExact, kTolerance } mode = Mode::kExact;
  double rtol = 0;
  double atol = 0;

  static ComparePolicy Exact() { return {}; }
  bool operator==(const ComparePolicy&) const = default;
  static ComparePolicy Tolerance(DType dtype);  // the per-dtype defaults above
  std::string Describe() const;  // "exact" or "tolerance (rtol 1e-09, atol 1e-12 x max|ref|)"
  nlohmann::json Json() const;    // {"mode": "exact" or "tolerance", "rtol", "atol"}
};

// One tensor's comparison. `run` is the value under test, `ref` the expected one.
struct TensorComparison {
  std::string name;   // "block 3 linear1.weight", "loss", "output mb 7"
  std::string group;  // "loss", "output", "gradient", or a caller's own
  std::string note;   // where it comes from, e.g. "stages 3 (rank 3) + 12 (rank 4)"
  DType dtype = DType::kF64;
  int rows = 0;
  int cols = 0;
  std::string shape_problem;  // non-empty when the two cannot be compared element by element

  int64_t count = 0;       // elements compared
  int64_t mismatches = 0;  // elements outside the policy
  double max_abs = 0;      // max |run - ref|
  double max_rel = 0;      // max |run - ref| / |ref| (over ref != 0; inf where ref == 0 != run)
  // The DualPipe reference's measure: 1 - 2 sum(run ref) / sum(run^2 + ref^2); 0 when equal.
  double cosine = 0;
  std::optional<uint64_t> max_ulp;  // units in the last place of the dtype; none with a NaN
  int64_t first_index = -1;          // the first mismatching element (row-major), -1 if none
  double first_run = 0;
  double first_ref = 0;

  bool ok() const { return mismatches == 0 && shape_problem.empty(); }
  std::string FirstPosition() const;  // "[5,3]" (row, column) of first_index
};

// Elementwise comparison of two host tensors. Differing dtypes compare by value (max_ulp empty);
// differing shapes give a comparison with `shape_problem` set and every element counted.
TensorComparison CompareTensors(std::string name, const HostTensor& run, const HostTensor& ref,
                                const ComparePolicy& policy);

// ULP distance between two values of `dtype` given as raw bits (no NaN).
uint64_t UlpDistance(DType dtype, uint64_t a_bits, uint64_t b_bits);

struct MismatchReport {
  ComparePolicy policy;
  // Set where tensors of several types were compared under different policies (`pipeproof
  // diff` of a mixed dump): type name -> its policy. The headline and the JSON then give these,
  // and `policy` is not shown.
  std::map<std::string, ComparePolicy> policy_by_type;
  std::vector<TensorComparison> tensors;  // in the order added

  bool ok() const;
  int64_t MismatchingTensors() const;
  // policy.Describe(), or "per type: F32 tolerance (...); I64 exact".
  std::string DescribePolicy() const;
  bool BitForBit() const;  // every tensor was compared exactly
  // Worst first: shape problems, then by max ULP (a NaN is worst), then max rel, then name.
  std::vector<const TensorComparison*> WorstFirst() const;
  // For people: a summary line, then one line per mismatching tensor, worst first, at most
  // `max_lines` of them (the rest counted).
  std::string Text(int max_lines = 20) const;
  // For programs: {"ok", "mode", "rtol", "atol", "compared", "mismatching", "tensors": [...]},
  // every tensor, worst first. Per type: "mode" is "per type", "rtol" and "atol" are null, and
  // "tolerances" maps each type to its {"mode", "rtol", "atol"}.
  std::string Json() const;
};

}  // namespace pipeproof
