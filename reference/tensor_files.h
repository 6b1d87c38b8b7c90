// Tensor dumps as users write them: safetensors files and NumPy .npy files, alone or in
// directories. Debian packages no maintained C++ reader for either, so these are small strict
// ones (fuzzed: fuzz/safetensors_fuzzer.cpp, fuzz/npy_fuzzer.cpp) with writers to match.
//
// safetensors (https://github.com/huggingface/safetensors): an 8-byte little-endian header
// length N (at most 100 MB), N bytes of a JSON object, then the data. Every key but
// "__metadata__" (an object of strings, or null) names a tensor: {"dtype", "shape",
// "data_offsets": [begin, end]} and nothing else, offsets relative to the data, end - begin =
// elements x element size. The tensors tile the data exactly: no gap, no overlap, nothing after
// (the spec's rule against polyglot files). The header starts with '{' and may be padded with
// spaces; duplicate keys are refused.
//
// .npy (NEP 1): "\x93NUMPY", version 1.0 (2-byte header length), 2.0 or 3.0 (4 bytes), then a
// Python dict literal {'descr': ..., 'fortran_order': ..., 'shape': (...)} with exactly those
// keys, padded with spaces and ended by '\n', then exactly the data. Read: little-endian (or
// byte-order-free) f2/f4/f8, i1/i2/i4/i8, u1/u2/u4/u8, b1, and raw 2-byte elements '<V2', taken as
// bfloat16 (what numpy writes for ml_dtypes' bfloat16, which has no descr of its own). Refused:
// big-endian data, structured and object arrays, other raw widths. fortran_order True is read and
// turned into C order, so element indices mean the same whichever order a file was saved in.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pipeproof {

enum class ElementType : uint8_t {
  kBool,
  kU8,
  kI8,
  kU16,
  kI16,
  kU32,
  kI32,
  kU64,
  kI64,
  kF8E4M3,
  kF8E5M2,
  kF16,
  kBF16,
  kF32,
  kF64,
};
std::string_view ElementTypeName(ElementType type);  // safetensors' spelling: "F32", "BF16", "BOOL"
std::optional<ElementType> ElementTypeFromName(std::string_view name);
int ElementSize(ElementType type);
bool IsFloat(ElementType type);

// One tensor: its bytes, little-endian, in C (row-major) order.
struct StoredTensor {
  std::string name;
  ElementType type = ElementType::kF32;
  std::vector<int64_t> shape;
  std::shared_ptr<const std::string> storage;  // holds the bytes (a whole file, often)
  size_t offset = 0;
  size_t size = 0;

  std::string_view bytes() const { return std::string_view(*storage).substr(offset, size); }
  int64_t elements() const;
  std::string ShapeText() const;  // "[4,8,16]"
};
bool SameTensor(const StoredTensor& a, const StoredTensor& b);  // name, type, shape, bytes

struct SafetensorsFile {
  std::vector<StoredTensor> tensors;  // in the order of their data
  std::map<std::string, std::string> metadata;
};

// Strict readers: InputError ("NAME: error: tensor 'w': ...") on anything outside the format;
// never a crash on any input.
SafetensorsFile ParseSafetensors(std::shared_ptr<const std::string> bytes, std::string_view name);
StoredTensor ParseNpy(std::shared_ptr<const std::string> bytes, std::string_view name,
                      std::string tensor_name);

// Writers: what the readers read back to the same tensors.
std::string WriteSafetensors(const SafetensorsFile& file);
std::string WriteNpy(const StoredTensor& tensor);  // version 1.0, C order; bf16 as '<V2'
StoredTensor MakeTensor(std::string name, ElementType type, std::vector<int64_t> shape,
                        std::string bytes);
// The bytes of `values` as they lie in memory (little-endian, as the formats store them), for
// MakeTensor.
template <typename T>
std::string RawBytes(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

// A dump: one file, or a directory searched recursively for *.safetensors and *.npy. Names: a
// safetensors file's tensors by their own names, a lone .npy by its file name without ".npy"; in
// a directory, prefixed by the file's path relative to it without the extension ("rank0/w" for
// tensor "w" of rank0.safetensors, or for rank0/w.npy), so that either way of saving matches.
struct TensorDump {
  std::string path;
  std::vector<StoredTensor> tensors;
  int64_t files = 0;
  std::vector<std::string> notes;  // files skipped and why
};
TensorDump ReadTensorDump(const std::string& path);

}  // namespace pipeproof
