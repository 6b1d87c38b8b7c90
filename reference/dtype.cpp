#include "reference/dtype.h"

#include <bit>
#include <cstring>
#include <stdexcept>

namespace pipeproof {

std::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF64: return "f64";
    case DType::kF32: return "f32";
    case DType::kBF16: return "bf16";
  }
  return "?";
}

std::optional<DType> DTypeFromName(std::string_view name) {
  if (name == "f64") return DType::kF64;
  if (name == "f32") return DType::kF32;
  if (name == "bf16") return DType::kBF16;
  return std::nullopt;
}

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF64: return 8;
    case DType::kF32: return 4;
    case DType::kBF16: return 2;
  }
  return 0;
}

uint16_t FloatToBf16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float Bf16ToFloat(uint16_t bits) { return std::bit_cast<float>(uint32_t{bits} << 16); }

HostTensor HostTensor::Zeros(DType dtype, int rows, int cols) {
  HostTensor t;
  t.dtype = dtype;
  t.rows = rows;
  t.cols = cols;
  t.bytes.assign(static_cast<size_t>(t.size()) * DTypeSize(dtype), 0);
  return t;
}

namespace {
template <class T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
template <class T>
void Store(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}
}  // namespace

HostTensor HostTensor::FromDoubles(DType dtype, int rows, int cols,
                                   const std::vector<double>& values) {
  HostTensor t = Zeros(dtype, rows, cols);
  if (static_cast<int64_t>(values.size()) != t.size()) {
    throw std::logic_error("HostTensor::FromDoubles: size does not match the shape");
  }
  const size_t width = DTypeSize(dtype);
  for (int64_t i = 0; i < t.size(); ++i) {
    uint8_t* p = t.bytes.data() + i * width;
    switch (dtype) {
      case DType::kF64: Store(p, values[i]); break;
      case DType::kF32: Store(p, static_cast<float>(values[i])); break;
      case DType::kBF16: Store(p, FloatToBf16(static_cast<float>(values[i]))); break;
    }
  }
  return t;
}

double HostTensor::At(int64_t i) const {
  const uint8_t* p = bytes.data() + i * DTypeSize(dtype);
  switch (dtype) {
    case DType::kF64: return Load<double>(p);
    case DType::kF32: return Load<float>(p);
    case DType::kBF16: return Bf16ToFloat(Load<uint16_t>(p));
  }
  return 0;
}

uint64_t HostTensor::BitsAt(int64_t i) const {
  const uint8_t* p = bytes.data() + i * DTypeSize(dtype);
  switch (dtype) {
    case DType::kF64: return Load<uint64_t>(p);
    case DType::kF32: return Load<uint32_t>(p);
    case DType::kBF16: return Load<uint16_t>(p);
  }
  return 0;
}

std::vector<double> HostTensor::ToDoubles() const {
  std::vector<double> out(static_cast<size_t>(size()));
  for (int64_t i = 0; i < size(); ++i) out[i] = At(i);
  return out;
}

HostTensor Sum(const HostTensor& a, const HostTensor& b) {
  if (a.dtype != b.dtype || a.rows != b.rows || a.cols != b.cols) {
    throw std::logic_error("Sum: tensors differ in type or shape");
  }
  HostTensor out = a;
  const size_t width = DTypeSize(a.dtype);
  for (int64_t i = 0; i < a.size(); ++i) {
    uint8_t* p = out.bytes.data() + i * width;
    const uint8_t* q = b.bytes.data() + i * width;
    switch (a.dtype) {
      case DType::kF64: Store(p, Load<double>(p) + Load<double>(q)); break;
      case DType::kF32: Store(p, Load<float>(p) + Load<float>(q)); break;
      case DType::kBF16:
        Store(p, FloatToBf16(Bf16ToFloat(Load<uint16_t>(p)) + Bf16ToFloat(Load<uint16_t>(q))));
        break;
    }
  }
  return out;
}

}  // namespace pipeproof
