#include "reference/tensor_diff.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <nlohmann/json.hpp>

#include "schedule/errors.h"  // InputError, Quote

namespace pipeproof {

std::pair<std::string, std::string> ParseRename(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size()) {
    throw InputError(
        fmt::format("--map {}: expected OLD=NEW (A's name = B's name), or OLD*=NEW* for a prefix",
                    Quote(text)));
  }
  std::string from = text.substr(0, eq), to = text.substr(eq + 1);
  if (from.ends_with('*') != to.ends_with('*')) {
    throw InputError(fmt::format("--map {}: a '*' must end both names or neither", Quote(text)));
  }
  return {from, to};
}

ComparePolicy DefaultPolicy(ElementType type) {
  using Mode = ComparePolicy::Mode;
  switch (type) {
    case ElementType::kF64:
      return ComparePolicy::Tolerance(DType::kF64);
    case ElementType::kF32:
      return ComparePolicy::Tolerance(DType::kF32);
    case ElementType::kBF16:
      return ComparePolicy::Tolerance(DType::kBF16);
    case ElementType::kF16:
      return {Mode::kTolerance, 2e-3, 1e-3};
    case ElementType::kF8E4M3:
      return {Mode::kTolerance, 0.25, 0.125};
    case ElementType::kF8E5M2:
      return {Mode::kTolerance, 0.5, 0.25};
    default:
      return {Mode::kTolerance, 0, 0};  // integers: equal values
  }
}

namespace {

// ---- element decoding

template <typename T>
T Load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = uint32_t(h >> 15) << 31;
  const int exponent = (h >> 10) & 0x1f;
  const uint32_t mantissa = h & 0x3ff;
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);
  } else if (exponent == 31) {
    magnitude =
        mantissa ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  } else {
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
  }
  return sign ? -magnitude : magnitude;
}

// OCP float8 e4m3fn: bias 7, no infinities, S.1111.111 is NaN.
float E4M3ToFloat(uint8_t b) {
  const int exponent = (b >> 3) & 0xf, mantissa = b & 7;
  float magnitude;
  if (exponent == 15 && mantissa == 7) {
    magnitude = std::numeric_limits<float>::quiet_NaN();
  } else if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -9);
  } else {
    magnitude = std::ldexp(static_cast<float>(mantissa | 8), exponent - 10);
  }
  return b & 0x80 ? -magnitude : magnitude;
}

// float8 e5m2 is the upper byte of an f16.
float E5M2ToFloat(uint8_t b) { return HalfToFloat(static_cast<uint16_t>(b) << 8); }

// Raw bits of element i, zero-extended.
uint64_t RawBits(const StoredTensor& t, int64_t i) {
  const char* p = t.bytes().data() + i * ElementSize(t.type);
  switch (ElementSize(t.type)) {
    case 1:
      return Load<uint8_t>(p);
    case 2:
      return Load<uint16_t>(p);
    case 4:
      return Load<uint32_t>(p);
    default:
      return Load<uint64_t>(p);
  }
}

bool IsSigned(ElementType t) {
  return t == ElementType::kI8 || t == ElementType::kI16 || t == ElementType::kI32 ||
         t == ElementType::kI64;
}

int64_t SignExtend(uint64_t bits, int bytes) {
  const int shift = 64 - 8 * bytes;
  return static_cast<int64_t>(bits << shift) >> shift;
}

// The report's element type a file type is compared as.
DType CompareAs(ElementType t) {
  switch (t) {
    case ElementType::kF64:
      return DType::kF64;
    case ElementType::kBF16:
      return DType::kBF16;
    case ElementType::kF32:
    case ElementType::kF16:
    case ElementType::kF8E4M3:
    case ElementType::kF8E5M2:
      return DType::kF32;
    default:
      return DType::kF64;  // integers and bool, exactly up to 2^53
  }
}

// [all but the last dimension, last dimension]; a scalar is 1 x 1, a vector 1 x n.
std::pair<int64_t, int64_t> Flattened(const std::vector<int64_t>& shape) {
  if (shape.empty()) return {1, 1};
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
  return {rows, shape.back()};
}

HostTensor ToHost(const StoredTensor& t) {
  const auto [rows, cols] = Flattened(t.shape);
  constexpr int64_t kMaxDim = std::numeric_limits<int>::max();
  if (rows > kMaxDim || cols > kMaxDim) {
    throw InputError(
        fmt::format("tensor {} of shape {}: more than {} rows or columns when flattened",
                    Quote(t.name), t.ShapeText(), kMaxDim));
  }
  HostTensor h;
  h.dtype = CompareAs(t.type);
  h.rows = static_cast<int>(rows);
  h.cols = static_cast<int>(cols);
  const int64_t n = t.elements();
  const std::string_view bytes = t.bytes();
  if ((t.type == ElementType::kF64 || t.type == ElementType::kF32 ||
       t.type == ElementType::kBF16)) {
    h.bytes.assign(bytes.begin(), bytes.end());
    return h;
  }
  h.bytes.resize(n * DTypeSize(h.dtype));
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t bits = RawBits(t, i);
    if (h.dtype == DType::kF32) {
      float v = t.type == ElementType::kF16      ? HalfToFloat(static_cast<uint16_t>(bits))
                : t.type == ElementType::kF8E4M3 ? E4M3ToFloat(static_cast<uint8_t>(bits))
                                                 : E5M2ToFloat(static_cast<uint8_t>(bits));
      std::memcpy(h.bytes.data() + 4 * i, &v, 4);
    } else {
      const double v = IsSigned(t.type) ? static_cast<double>(SignExtend(bits, ElementSize(t.type)))
                                        : static_cast<double>(bits);
      std::memcpy(h.bytes.data() + 8 * i, &v, 8);
    }
  }
  return h;
}

// Units in the last place of the file's own type (integers: the difference itself).
uint64_t NativeUlp(ElementType type, uint64_t a, uint64_t b) {
  if (!IsFloat(type)) {
    if (IsSigned(type)) {
      const int64_t x = SignExtend(a, ElementSize(type)), y = SignExtend(b, ElementSize(type));
      return x > y ? static_cast<uint64_t>(x) - static_cast<uint64_t>(y)
                   : static_cast<uint64_t>(y) - static_cast<uint64_t>(x);
    }
    return a > b ? a - b : b - a;
  }
  const uint64_t sign = uint64_t{1} << (8 * ElementSize(type) - 1);
  auto ordered = [&](uint64_t bits) {
    return (bits & sign) ? sign - 1 - (bits & (sign - 1)) : bits + sign;
  };
  const uint64_t x = ordered(a), y = ordered(b);
  return x > y ? x - y : y - x;
}

bool IsNan(ElementType type, uint64_t bits) {
  switch (type) {
    case ElementType::kF16:
      return (bits & 0x7c00) == 0x7c00 && (bits & 0x3ff);
    case ElementType::kF8E4M3:
      return (bits & 0x7f) == 0x7f;
    case ElementType::kF8E5M2:
      return (bits & 0x7c) == 0x7c && (bits & 3);
    default:
      return false;
  }
}

// Fixes what widening loses: ULPs in the file's own type; integer exactness beyond 2^53.
void InOwnType(TensorComparison& c, const StoredTensor& run, const StoredTensor& ref,
               const ComparePolicy& policy) {
  const ElementType type = ref.type;
  const bool native =
      type == ElementType::kF64 || type == ElementType::kF32 || type == ElementType::kBF16;
  if (native) return;
  const int64_t n = ref.elements();
  if (!IsFloat(type) && policy.mode == ComparePolicy::Mode::kExact) {
    c.mismatches = 0;
    c.first_index = -1;
    for (int64_t i = 0; i < n; ++i) {
      if (RawBits(run, i) == RawBits(ref, i)) continue;
      if (c.first_index < 0) c.first_index = i;
      ++c.mismatches;
    }
  }
  if (!c.max_ulp) return;  // a NaN where none belongs: no distance
  uint64_t worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t a = RawBits(run, i), b = RawBits(ref, i);
    if (a == b || IsNan(type, a) || IsNan(type, b)) continue;
    worst = std::max(worst, NativeUlp(type, a, b));
  }
  c.max_ulp = worst;
}

std::vector<int64_t> IndexOf(int64_t flat, const std::vector<int64_t>& shape) {
  std::vector<int64_t> index(shape.size());
  for (size_t k = shape.size(); k-- > 0;) {
    if (shape[k] == 0) return {};
    index[k] = flat % shape[k];
    flat /= shape[k];
  }
  return index;
}

std::string IndexText(const std::vector<int64_t>& index) {
  return fmt::format("[{}]", fmt::join(index, ","));
}

TensorComparison Missing(const std::string& name, const StoredTensor& t, const char* where) {
  TensorComparison c;
  c.name = name;
  c.group = "tensors";
  c.dtype = CompareAs(t.type);
  const auto [rows, cols] = Flattened(t.shape);
  c.rows = static_cast<int>(std::min<int64_t>(rows, std::numeric_limits<int>::max()));
  c.cols = static_cast<int>(std::min<int64_t>(cols, std::numeric_limits<int>::max()));
  c.shape_problem = where;
  c.count = c.mismatches = std::max<int64_t>(t.elements(), 1);
  c.max_abs = c.max_rel = c.cosine = std::numeric_limits<double>::infinity();
  return c;
}

std::string MappedName(const std::string& name, const DiffOptions& options) {
  for (const auto& [from, to] : options.renames) {
    if (from.ends_with('*')) {
      const std::string_view prefix(from.data(), from.size() - 1);
      if (name.starts_with(prefix)) return to.substr(0, to.size() - 1) + name.substr(prefix.size());
    } else if (name == from) {
      return to;
    }
  }
  return name;
}

TensorComparison Compare(const StoredTensor& a, const StoredTensor& b, const std::string& name,
                         const ComparePolicy& policy, DiffEntry& entry, const ComparedPair& visit) {
  if (a.shape != b.shape) {
    TensorComparison c = Missing(name, a, "");
    c.shape_problem = fmt::format("shape {} in A, {} in B", a.ShapeText(), b.ShapeText());
    c.count = c.mismatches = std::max(a.elements(), b.elements());
    return c;
  }
  const HostTensor run = ToHost(b), ref = ToHost(a);
  TensorComparison c = CompareTensors(name, run, ref, policy);
  c.group = "tensors";
  if (a.type == b.type) {
    InOwnType(c, b, a, policy);
  } else {
    c.max_ulp.reset();  // no common unit
  }
  std::vector<std::string> note;
  const bool plain =
      a.type == b.type && a.shape.size() == 2 &&
      (a.type == ElementType::kF64 || a.type == ElementType::kF32 || a.type == ElementType::kBF16);
  if (!plain) {
    note.push_back(a.type == b.type ? fmt::format("{} {}", ElementTypeName(a.type), a.ShapeText())
                                    : fmt::format("{} in A, {} in B, {}", ElementTypeName(a.type),
                                                  ElementTypeName(b.type), a.ShapeText()));
  }
  if (c.first_index >= 0) {
    entry.first_index = IndexOf(c.first_index, a.shape);
    if (!plain) note.push_back("first mismatch at " + IndexText(entry.first_index));
  }
  c.note = fmt::format("{}", fmt::join(note, "; "));
  if (visit) visit(c, run, ref, policy);
  return c;
}

}  // namespace

TensorDiff DiffTensors(const TensorDump& a, const TensorDump& b, const DiffOptions& options,
                       const ComparedPair& visit) {
  TensorDiff d;
  d.a_path = a.path;
  d.b_path = b.path;
  d.a_tensors = static_cast<int64_t>(a.tensors.size());
  d.b_tensors = static_cast<int64_t>(b.tensors.size());
  for (const StoredTensor& t : a.tensors) d.a_bytes += t.size;
  for (const StoredTensor& t : b.tensors) d.b_bytes += t.size;
  d.notes = a.notes;
  d.notes.insert(d.notes.end(), b.notes.begin(), b.notes.end());

  // One policy for the whole report, or, where A's types get different ones, each type's.
  std::set<ElementType> types;
  for (const StoredTensor& t : a.tensors) types.insert(t.type);
  auto policy_of = [&](ElementType type) {
    if (options.exact) return ComparePolicy::Exact();
    ComparePolicy p = DefaultPolicy(type);
    if (IsFloat(type)) {
      if (options.rtol) p.rtol = *options.rtol;
      if (options.atol) p.atol = *options.atol;
    }
    return p;
  };
  d.report.policy = policy_of(types.empty() ? ElementType::kF32 : *types.begin());
  for (ElementType type : types) {
    if (policy_of(type) != d.report.policy) {
      for (ElementType each : types) d.report.policy_by_type[std::string(ElementTypeName(each))] = policy_of(each);
      break;
    }
  }

  std::map<std::string, const StoredTensor*> in_b;
  for (const StoredTensor& t : b.tensors) in_b[t.name] = &t;
  std::map<std::string, bool> b_used;
  for (const StoredTensor& t : a.tensors) {
    const std::string target = MappedName(t.name, options);
    DiffEntry entry{t.name, "", t.type, std::nullopt, t.shape, {}, {}, std::nullopt};
    auto it = in_b.find(target);
    if (it == in_b.end()) {
      d.report.tensors.push_back(
          Missing(t.name, t, "only in A: B has no tensor of this name (--map OLD=NEW renames)"));
      d.entries.push_back(std::move(entry));
      continue;
    }
    const StoredTensor& other = *it->second;
    b_used[target] = true;
    entry.b_name = other.name;
    entry.b_type = other.type;
    entry.b_shape = other.shape;
    const ComparePolicy policy = policy_of(t.type);
    const std::string name = target == t.name ? t.name : t.name + " -> " + target;
    entry.policy = policy;
    TensorComparison c = Compare(t, other, name, policy, entry, visit);
    d.report.tensors.push_back(std::move(c));
    d.entries.push_back(std::move(entry));
  }
  for (const StoredTensor& t : b.tensors) {
    if (b_used.count(t.name)) continue;
    d.report.tensors.push_back(Missing(t.name, t, "only in B: A has no tensor of this name"));
    d.entries.push_back({"", t.name, std::nullopt, t.type, {}, t.shape, {}, std::nullopt});
  }
  return d;
}

namespace {
std::string Size(uint64_t n) {
  if (n >= (uint64_t{1} << 20)) return fmt::format("{:.1f} MiB", n / double(uint64_t{1} << 20));
  if (n >= 1024) return fmt::format("{:.1f} KiB", n / 1024.0);
  return fmt::format("{} bytes", n);
}
}  // namespace

std::string TensorDiff::Text(int max_lines) const {
  std::string out =
      fmt::format("A (reference): {}: {} tensors, {}\nB (run):       {}: {} tensors, {}\n", a_path,
                  a_tensors, Size(a_bytes), b_path, b_tensors, Size(b_bytes));
  out += report.Text(max_lines);
  for (const std::string& n : notes) out += "note: " + n + "\n";
  return out;
}

std::string TensorDiff::Json() const {
  nlohmann::json j = nlohmann::json::parse(report.Json());
  j["a"] = {{"path", a_path}, {"tensors", a_tensors}, {"bytes", a_bytes}};
  j["b"] = {{"path", b_path}, {"tensors", b_tensors}, {"bytes", b_bytes}};
  j["notes"] = notes;
  // The report lists tensors worst first; find each one's entry by its name.
  std::map<std::string, const DiffEntry*> by_name;
  for (size_t i = 0; i < entries.size(); ++i) by_name[report.tensors[i].name] = &entries[i];
  for (auto& t : j["tensors"]) {
    auto it = by_name.find(t["name"].get<std::string>());
    if (it == by_name.end()) continue;
    const DiffEntry& e = *it->second;
    auto side = [](const std::string& name, const std::optional<ElementType>& type,
                   const std::vector<int64_t>& shape) {
      return name.empty()
                 ? nlohmann::json(nullptr)
                 : nlohmann::json{
                       {"name", name}, {"dtype", ElementTypeName(*type)}, {"shape", shape}};
    };
    if (e.policy) t["tolerance"] = e.policy->Json();
    t["a"] = side(e.a_name, e.a_type, e.a_shape);
    t["b"] = side(e.b_name, e.b_type, e.b_shape);
    if (!e.first_index.empty() && t.contains("first")) t["first"]["index_nd"] = e.first_index;
  }
  return j.dump(2) + "\n";
}

}  // namespace pipeproof
