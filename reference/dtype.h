// Element types and host copies of tensors: what results are made of once they leave a device.
// A HostTensor keeps the exact bits its device produced, so exact comparison is bit comparison
// whatever the element type (f64, f32 on CPU now; bf16 from the CUDA device later).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pipeproof {

enum class DType : uint8_t { kF64, kF32, kBF16 };

std::string_view DTypeName(DType dtype);  // "f64", "f32", "bf16"
std::optional<DType> DTypeFromName(std::string_view name);
size_t DTypeSize(DType dtype);

// bf16 is the upper half of an f32; rounding to nearest even, NaN kept quiet.
uint16_t FloatToBf16(float value);
float Bf16ToFloat(uint16_t bits);

// A rows x cols matrix (row-major) in host memory, holding the device's bits unchanged.
struct HostTensor {
  DType dtype = DType::kF64;
  int rows = 0;
  int cols = 0;
  std::vector<uint8_t> bytes;

  static HostTensor Zeros(DType dtype, int rows, int cols);
  // Values rounded to `dtype` (round to nearest even).
  static HostTensor FromDoubles(DType dtype, int rows, int cols, const std::vector<double>& values);

  int64_t size() const { return int64_t{rows} * cols; }
  double At(int64_t i) const;         // the element widened to double (exact for all dtypes)
  uint64_t BitsAt(int64_t i) const;   // the element's raw bits, zero-extended
  std::vector<double> ToDoubles() const;
  friend bool operator==(const HostTensor&, const HostTensor&) = default;
};

// a + b element by element in the tensors' own precision (bf16: add in f32, round once, as a
// device's bf16 add does). Executor and reference both combine shared parameter blocks with it,
// so in exact mode the combination itself cannot differ.
HostTensor Sum(const HostTensor& a, const HostTensor& b);

}  // namespace pipeproof
