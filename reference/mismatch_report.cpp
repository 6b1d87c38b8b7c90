#include "reference/mismatch_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

namespace pipeproof {

ComparePolicy ComparePolicy::Tolerance(DType dtype) {
  switch (dtype) {
    case DType::kF64: return {Mode::kTolerance, 1e-9, 1e-12};
    case DType::kF32: return {Mode::kTolerance, 1e-4, 1e-5};
    case DType::kBF16: return {Mode::kTolerance, 1.6e-2, 1e-2};
  }
  return {Mode::kTolerance, 0, 0};
}

std::string ComparePolicy::Describe() const {
  if (mode == Mode::kExact) return "exact";
  return fmt::format("tolerance (rtol {:g}, atol {:g} x max|ref|)", rtol, atol);
}

nlohmann::json ComparePolicy::Json() const {
  return {{"mode", mode == Mode::kExact ? "exact" : "tolerance"}, {"rtol", rtol}, {"atol", atol}};
}

std::string TensorComparison::FirstPosition() const {
  if (first_index < 0) return "";
  if (cols <= 0) return fmt::format("[{}]", first_index);
  return fmt::format("[{},{}]", first_index / cols, first_index % cols);
}

namespace {

int SignBit(DType dtype) { return static_cast<int>(8 * DTypeSize(dtype)) - 1; }

// Maps a float's bits onto an unsigned line on which adjacent floats are adjacent integers:
// negative values below positive ones, -0 and +0 one step apart.
uint64_t OrderedBits(DType dtype, uint64_t bits) {
  const uint64_t sign = uint64_t{1} << SignBit(dtype);
  return (bits & sign) ? sign - 1 - (bits & (sign - 1)) : bits + sign;
}

}  // namespace

uint64_t UlpDistance(DType dtype, uint64_t a_bits, uint64_t b_bits) {
  const uint64_t a = OrderedBits(dtype, a_bits), b = OrderedBits(dtype, b_bits);
  return a > b ? a - b : b - a;
}

TensorComparison CompareTensors(std::string name, const HostTensor& run, const HostTensor& ref,
                                const ComparePolicy& policy) {
  TensorComparison c;
  c.name = std::move(name);
  c.dtype = ref.dtype;
  c.rows = ref.rows;
  c.cols = ref.cols;
  if (run.rows != ref.rows || run.cols != ref.cols) {
    c.shape_problem = fmt::format("shape {}x{} in the run, {}x{} in the reference", run.rows,
                                  run.cols, ref.rows, ref.cols);
    c.count = std::max(run.size(), ref.size());
    c.mismatches = c.count;
    c.max_abs = c.max_rel = c.cosine = std::numeric_limits<double>::infinity();
    return c;
  }
  const bool same_dtype = run.dtype == ref.dtype;
  const bool exact = policy.mode == ComparePolicy::Mode::kExact;
  c.count = ref.size();
  if (same_dtype) c.max_ulp = 0;
  double scale = 0;  // the absolute tolerance is relative to the reference's largest magnitude
  if (!exact) {
    for (int64_t i = 0; i < c.count; ++i) {
      if (std::isfinite(ref.At(i))) scale = std::max(scale, std::abs(ref.At(i)));
    }
  }
  const double atol = policy.atol * scale;
  double sum_xy = 0, sum_sq = 0;
  for (int64_t i = 0; i < c.count; ++i) {
    const double x = run.At(i), y = ref.At(i);
    const bool nan = std::isnan(x) || std::isnan(y);
    bool bad;
    if (exact) {
      bad = same_dtype ? run.BitsAt(i) != ref.BitsAt(i) : !(x == y || (std::isnan(x) && std::isnan(y)));
    } else {
      bad = nan || !(std::abs(x - y) <= atol + policy.rtol * std::abs(y) || x == y);
    }
    sum_xy += x * y;
    sum_sq += x * x + y * y;
    if (nan) {
      if (bad) {
        c.max_abs = c.max_rel = std::numeric_limits<double>::quiet_NaN();
        c.max_ulp.reset();
      }
    } else if (x != y) {
      const double diff = std::abs(x - y);
      if (!std::isnan(c.max_abs)) c.max_abs = std::max(c.max_abs, diff);
      if (!std::isnan(c.max_rel)) {
        c.max_rel = std::max(c.max_rel, y != 0 ? diff / std::abs(y)
                                                : std::numeric_limits<double>::infinity());
      }
      if (c.max_ulp) c.max_ulp = std::max(*c.max_ulp, UlpDistance(ref.dtype, run.BitsAt(i), ref.BitsAt(i)));
    } else if (c.max_ulp && run.BitsAt(i) != ref.BitsAt(i)) {
      c.max_ulp = std::max<uint64_t>(*c.max_ulp, 1);  // +0 and -0
    }
    if (bad) {
      if (c.first_index < 0) {
        c.first_index = i;
        c.first_run = x;
        c.first_ref = y;
      }
      ++c.mismatches;
    }
  }
  c.cosine = sum_sq == 0 ? 0 : 1 - 2 * sum_xy / sum_sq;
  return c;
}

bool MismatchReport::ok() const { return MismatchingTensors() == 0; }

int64_t MismatchReport::MismatchingTensors() const {
  return std::count_if(tensors.begin(), tensors.end(), [](const auto& t) { return !t.ok(); });
}

namespace {

// Larger is worse. A NaN anywhere ranks above every finite distance.
std::tuple<int, int, int, double, double> Badness(const TensorComparison& t) {
  const bool nan = std::isnan(t.max_abs) || std::isnan(t.max_rel);
  const double ulp = t.max_ulp ? static_cast<double>(*t.max_ulp) : 0;
  return {t.ok() ? 0 : 1, t.shape_problem.empty() ? 0 : 1, nan ? 1 : 0, ulp,
          std::isnan(t.max_rel) ? 0 : t.max_rel};
}

std::string Value(DType dtype, double v) {
  return dtype == DType::kF64 ? fmt::format("{:.17g}", v) : fmt::format("{:.9g}", v);
}

std::string Line(const TensorComparison& t) {
  std::string where = t.note.empty() ? "" : fmt::format(" ({})", t.note);
  if (!t.shape_problem.empty()) return fmt::format("  {}{}: {}", t.name, where, t.shape_problem);
  std::string ulp = t.max_ulp ? fmt::format("{}", *t.max_ulp) : "n/a";
  return fmt::format(
      "  {}{} [{}x{}]: {} of {} differ; first {} run {} ref {}; max abs {:.3g}, max rel {:.3g}, "
      "max ulp {}, cosine 1-2xy/(x2+y2) {:.3g}",
      t.name, where, t.rows, t.cols, t.mismatches, t.count, t.FirstPosition(),
      Value(t.dtype, t.first_run), Value(t.dtype, t.first_ref), t.max_abs, t.max_rel, ulp,
      t.cosine);
}

// "20 losses, 20 outputs, 16 gradients": the groups in the order they first appear.
std::string GroupCounts(const std::vector<TensorComparison>& tensors) {
  std::vector<std::pair<std::string, int>> counts;
  for (const auto& t : tensors) {
    auto it = std::find_if(counts.begin(), counts.end(), [&](auto& c) { return c.first == t.group; });
    if (it == counts.end()) {
      counts.push_back({t.group, 1});
    } else {
      ++it->second;
    }
  }
  std::vector<std::string> parts;
  for (const auto& [group, n] : counts) parts.push_back(fmt::format("{} {}", n, group.empty() ? "tensors" : group));
  return fmt::format("{}", fmt::join(parts, ", "));
}

}  // namespace

std::vector<const TensorComparison*> MismatchReport::WorstFirst() const {
  std::vector<const TensorComparison*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return Badness(*a) > Badness(*b);
  });
  return order;
}

std::string MismatchReport::DescribePolicy() const {
  if (policy_by_type.empty()) return policy.Describe();
  std::vector<std::string> parts;
  for (const auto& [type, p] : policy_by_type) parts.push_back(fmt::format("{} {}", type, p.Describe()));
  return fmt::format("per type: {}", fmt::join(parts, "; "));
}

bool MismatchReport::BitForBit() const {
  if (policy_by_type.empty()) return policy.mode == ComparePolicy::Mode::kExact;
  return std::all_of(policy_by_type.begin(), policy_by_type.end(),
                     [](const auto& each) { return each.second.mode == ComparePolicy::Mode::kExact; });
}

std::string MismatchReport::Text(int max_lines) const {
  const int64_t bad = MismatchingTensors();
  std::string out;
  if (bad == 0) {
    return fmt::format("{}: all {} tensors match ({}){}\n", DescribePolicy(), tensors.size(),
                       GroupCounts(tensors), BitForBit() ? ", bit for bit" : "");
  }
  out = fmt::format("{}: {} of {} tensors differ ({} compared), worst first:\n", DescribePolicy(), bad,
                    tensors.size(), GroupCounts(tensors));
  int shown = 0;
  for (const TensorComparison* t : WorstFirst()) {
    if (t->ok()) break;
    if (shown == max_lines) {
      out += fmt::format("  ... and {} more (the JSON report has them all)\n", bad - shown);
      break;
    }
    out += Line(*t) + "\n";
    ++shown;
  }
  return out;
}

namespace {
nlohmann::json Number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}
}  // namespace

std::string MismatchReport::Json() const {
  nlohmann::json j;
  j["ok"] = ok();
  if (policy_by_type.empty()) {
    j.update(policy.Json());
  } else {
    j["mode"] = "per type";
    j["rtol"] = j["atol"] = nullptr;
    j["tolerances"] = nlohmann::json::object();
    for (const auto& [type, p] : policy_by_type) j["tolerances"][type] = p.Json();
  }
  j["compared"] = tensors.size();
  j["mismatching"] = MismatchingTensors();
  j["tensors"] = nlohmann::json::array();
  for (const TensorComparison* t : WorstFirst()) {
    nlohmann::json e;
    e["name"] = t->name;
    e["group"] = t->group;
    if (!t->note.empty()) e["note"] = t->note;
    e["dtype"] = DTypeName(t->dtype);
    e["shape"] = {t->rows, t->cols};
    e["ok"] = t->ok();
    if (!t->shape_problem.empty()) e["shape_problem"] = t->shape_problem;
    e["count"] = t->count;
    e["mismatches"] = t->mismatches;
    e["max_abs"] = Number(t->max_abs);
    e["max_rel"] = Number(t->max_rel);
    e["cosine"] = Number(t->cosine);
    e["max_ulp"] = t->max_ulp ? nlohmann::json(*t->max_ulp) : nlohmann::json(nullptr);
    if (t->first_index >= 0) {
      e["first"] = {{"index", t->first_index},
                    {"position", {t->first_index / std::max(t->cols, 1), t->first_index % std::max(t->cols, 1)}},
                    {"run", Number(t->first_run)},
                    {"ref", Number(t->first_ref)}};
    }
    j["tensors"].push_back(std::move(e));
  }
  return j.dump(2) + "\n";
}

}  // namespace pipeproof
