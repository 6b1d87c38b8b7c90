#include "reference/tensor_files.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "schedule/errors.h"  // InputError, Quote
#include "schedule/json_text.h"
#include "schedule/read_file.h"

namespace pipeproof {

namespace {

struct TypeInfo {
  ElementType type;
  std::string_view name;  // safetensors
  int size;
  char npy_kind;  // 'f', 'i', 'u', 'b', 'V'; 0: no .npy spelling
};

constexpr TypeInfo kTypes[] = {
    {ElementType::kBool, "BOOL", 1, 'b'},    {ElementType::kU8, "U8", 1, 'u'},
    {ElementType::kI8, "I8", 1, 'i'},        {ElementType::kU16, "U16", 2, 'u'},
    {ElementType::kI16, "I16", 2, 'i'},      {ElementType::kU32, "U32", 4, 'u'},
    {ElementType::kI32, "I32", 4, 'i'},      {ElementType::kU64, "U64", 8, 'u'},
    {ElementType::kI64, "I64", 8, 'i'},      {ElementType::kF8E4M3, "F8_E4M3", 1, 0},
    {ElementType::kF8E5M2, "F8_E5M2", 1, 0}, {ElementType::kF16, "F16", 2, 'f'},
    {ElementType::kBF16, "BF16", 2, 'V'},    {ElementType::kF32, "F32", 4, 'f'},
    {ElementType::kF64, "F64", 8, 'f'},
};

const TypeInfo& Info(ElementType t) { return kTypes[static_cast<int>(t)]; }

constexpr uint64_t kMaxSafetensorsHeader = 100'000'000;  // the safetensors library's own limit
constexpr int64_t kMaxElements = int64_t{1} << 48;
constexpr int kMaxRank = 64;

}  // namespace

std::string_view ElementTypeName(ElementType type) { return Info(type).name; }

std::optional<ElementType> ElementTypeFromName(std::string_view name) {
  for (const TypeInfo& t : kTypes) {
    if (t.name == name) return t.type;
  }
  return std::nullopt;
}

int ElementSize(ElementType type) { return Info(type).size; }

bool IsFloat(ElementType type) { return type >= ElementType::kF8E4M3; }

int64_t StoredTensor::elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string StoredTensor::ShapeText() const { return fmt::format("[{}]", fmt::join(shape, ",")); }

bool SameTensor(const StoredTensor& a, const StoredTensor& b) {
  return a.name == b.name && a.type == b.type && a.shape == b.shape && a.bytes() == b.bytes();
}

StoredTensor MakeTensor(std::string name, ElementType type, std::vector<int64_t> shape,
                        std::string bytes) {
  StoredTensor t;
  t.name = std::move(name);
  t.type = type;
  t.shape = std::move(shape);
  t.size = bytes.size();
  t.storage = std::make_shared<const std::string>(std::move(bytes));
  return t;
}

namespace {

// Elements of a shape, refusing negative dimensions and overflow.
std::optional<int64_t> Elements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (d != 0 && n > kMaxElements / d) return std::nullopt;
    n *= d;
  }
  return n;
}

// How many of a file's first bytes hold its header, from the bytes that give its length (8 for
// safetensors, 10 or 12 for .npy; fewer, or no magic: what is there). Unchecked: the parsers
// refuse a length that is out of bounds.
uint64_t SafetensorsHeaderEnd(std::string_view b) {
  if (b.size() < 8) return b.size();
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<unsigned char>(b[i]);
  return n > std::numeric_limits<uint64_t>::max() - 8 ? std::numeric_limits<uint64_t>::max() : 8 + n;
}

constexpr char kNpyMagic[] = "\x93NUMPY";

uint64_t NpyHeaderEnd(std::string_view b) {
  if (b.size() < 10 || b.compare(0, 6, kNpyMagic) != 0) return b.size();
  const size_t length_bytes = static_cast<unsigned char>(b[6]) == 1 ? 2 : 4;
  if (b.size() < 8 + length_bytes) return b.size();
  uint64_t header_length = 0;
  for (size_t i = length_bytes; i-- > 0;) header_length = header_length << 8 | static_cast<unsigned char>(b[8 + i]);
  return 8 + length_bytes + header_length;
}

// ---- safetensors

class SafetensorsReader {
 public:
  // `bytes` is the file, or (checking a header before reading the rest) its first
  // SafetensorsHeaderEnd bytes of a file of `file_size` bytes.
  SafetensorsReader(std::shared_ptr<const std::string> bytes, std::string_view name, uint64_t file_size)
      : bytes_(std::move(bytes)), name_(name), file_size_(file_size) {}

  SafetensorsFile Read() {
    const std::string& b = *bytes_;
    if (file_size_ < 8 || b.size() < 8)
      Fail(fmt::format("{} bytes: too short for the 8-byte header length", file_size_));
    const uint64_t n = SafetensorsHeaderEnd(b) - 8;
    if (n > kMaxSafetensorsHeader)
      Fail(fmt::format("header length {} is beyond the format's limit of {} bytes", n,
                       kMaxSafetensorsHeader));
    if (n > file_size_ - 8 || n > b.size() - 8)
      Fail(fmt::format("header length {} runs past the end of the {}-byte file", n, file_size_));
    const std::string_view header(b.data() + 8, n);
    const size_t data_begin = 8 + n;
    const uint64_t data_size = file_size_ - data_begin;
    const nlohmann::json j = ParseHeader(header);
    SafetensorsFile file;
    for (const auto& [key, value] : j.items()) {
      if (key == "__metadata__") {
        file.metadata = Metadata(value);
        continue;
      }
      file.tensors.push_back(Entry(key, value, data_begin, data_size));
    }
    CheckTiling(file.tensors, data_begin, data_size);
    return file;
  }

 private:
  [[noreturn]] void Fail(const std::string& what) const {
    throw InputError(what, std::string(name_));
  }

  nlohmann::json ParseHeader(std::string_view header) const {
    if (header.empty() || header.front() != '{')
      Fail("the header is not a JSON object (it must start with '{')");
    const size_t end = header.rfind('}');
    if (end == std::string_view::npos ||
        header.find_first_not_of(' ', end + 1) != std::string_view::npos) {
      Fail("the header must end with '}', padded with spaces only");
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(header.begin(), header.end());
    } catch (const nlohmann::json::exception& e) {
      Fail("the header is not valid JSON: " + JsonParserMessage(e.what()));
    }
    if (const std::optional<std::string> duplicate = FindDuplicateKey(header)) {
      Fail(fmt::format("key {} appears twice in one object of the header", Quote(*duplicate)));
    }
    if (!j.is_object()) Fail("the header is not a JSON object");
    return j;
  }

  std::map<std::string, std::string> Metadata(const nlohmann::json& v) const {
    std::map<std::string, std::string> out;
    if (v.is_null()) return out;
    if (!v.is_object()) Fail("__metadata__ must be an object of strings");
    for (const auto& [k, s] : v.items()) {
      if (!s.is_string()) Fail(fmt::format("__metadata__ {}: expected a string", Quote(k)));
      out[k] = s.get<std::string>();
    }
    return out;
  }

  uint64_t Unsigned(const nlohmann::json& v, const std::string& what) const {
    if (!v.is_number_unsigned()) Fail(what + ": expected a non-negative integer");
    return v.get<uint64_t>();
  }

  StoredTensor Entry(const std::string& name, const nlohmann::json& v, size_t data_begin,
                     uint64_t data_size) const {
    const std::string where = "tensor " + Quote(name);
    if (!v.is_object()) Fail(where + ": expected an object with dtype, shape and data_offsets");
    for (const auto& [k, _] : v.items()) {
      if (k != "dtype" && k != "shape" && k != "data_offsets")
        Fail(fmt::format("{}: unknown key {}", where, Quote(k)));
    }
    for (const char* k : {"dtype", "shape", "data_offsets"}) {
      if (!v.contains(k)) Fail(fmt::format("{}: missing \"{}\"", where, k));
    }
    const nlohmann::json& dtype = v["dtype"];
    if (!dtype.is_string()) Fail(where + ": dtype must be a string");
    const auto type = ElementTypeFromName(dtype.get<std::string>());
    if (!type)
      Fail(
          fmt::format("{}: dtype {} is not one pipeproof reads (BOOL, U8..U64, I8..I64, F8_E4M3, "
                      "F8_E5M2, F16, BF16, F32, F64)",
                      where, Quote(dtype.get<std::string>())));
    const nlohmann::json& shape = v["shape"];
    if (!shape.is_array() || shape.size() > kMaxRank)
      Fail(fmt::format("{}: shape must be an array of at most {} dimensions", where, kMaxRank));
    StoredTensor t;
    t.name = name;
    t.type = *type;
    for (size_t i = 0; i < shape.size(); ++i) {
      const uint64_t d = Unsigned(shape[i], fmt::format("{}: shape[{}]", where, i));
      if (d > static_cast<uint64_t>(kMaxElements))
        Fail(fmt::format("{}: shape[{}] = {} is too large", where, i, d));
      t.shape.push_back(static_cast<int64_t>(d));
    }
    const auto elements = Elements(t.shape);
    if (!elements) Fail(fmt::format("{}: shape {} has too many elements", where, t.ShapeText()));
    const nlohmann::json& offsets = v["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2)
      Fail(where + ": data_offsets must be [begin, end]");
    const uint64_t begin = Unsigned(offsets[0], where + ": data_offsets[0]");
    const uint64_t end = Unsigned(offsets[1], where + ": data_offsets[1]");
    if (begin > end || end > data_size) {
      Fail(fmt::format("{}: data_offsets [{}, {}] are not a range within the {} bytes of data",
                       where, begin, end, data_size));
    }
    const uint64_t expected = static_cast<uint64_t>(*elements) * ElementSize(t.type);
    if (end - begin != expected) {
      Fail(fmt::format("{}: {} {} elements of shape {} take {} bytes, data_offsets give {}", where,
                       *elements, ElementTypeName(t.type), t.ShapeText(), expected, end - begin));
    }
    t.storage = bytes_;
    t.offset = data_begin + begin;
    t.size = end - begin;
    return t;
  }

  void CheckTiling(std::vector<StoredTensor>& tensors, size_t data_begin,
                   uint64_t data_size) const {
    std::stable_sort(tensors.begin(), tensors.end(),
                     [](const StoredTensor& a, const StoredTensor& b) {
                       return std::pair(a.offset, a.size) < std::pair(b.offset, b.size);
                     });
    uint64_t cursor = 0;
    for (const StoredTensor& t : tensors) {
      const uint64_t begin = t.offset - data_begin;
      if (begin != cursor) {
        Fail(
            fmt::format("tensor {} starts at byte {} of the data, but the tensors before it end at "
                        "byte {}: the tensors "
                        "must tile the data with no gap and no overlap",
                        Quote(t.name), begin, cursor));
      }
      cursor = begin + t.size;
    }
    if (cursor != data_size)
      Fail(fmt::format("{} bytes after the last tensor belong to none", data_size - cursor));
  }

  std::shared_ptr<const std::string> bytes_;
  std::string_view name_;
  uint64_t file_size_;
};

// ---- npy


// The Python dict literal of an .npy header, parsed strictly.
class NpyHeaderParser {
 public:
  NpyHeaderParser(std::string_view text, std::string_view name) : s_(text), name_(name) {}

  struct Header {
    std::string descr;
    bool fortran_order = false;
    std::vector<int64_t> shape;
  };

  Header Parse() {
    Header h;
    bool have_descr = false, have_order = false, have_shape = false;
    Expect('{');
    Space();
    while (!Peek('}')) {
      const std::string key = String();
      Space();
      Expect(':');
      Space();
      if (key == "descr") {
        if (have_descr) Fail("'descr' appears twice");
        h.descr = String();
        have_descr = true;
      } else if (key == "fortran_order") {
        if (have_order) Fail("'fortran_order' appears twice");
        h.fortran_order = Bool();
        have_order = true;
      } else if (key == "shape") {
        if (have_shape) Fail("'shape' appears twice");
        h.shape = Tuple();
        have_shape = true;
      } else {
        Fail(fmt::format("unknown key {}", Quote(key)));
      }
      Space();
      if (Peek(',')) {
        ++i_;
        Space();
      } else if (!Peek('}')) {
        Fail("expected ',' or '}'");
      }
    }
    ++i_;
    if (!have_descr || !have_order || !have_shape)
      Fail("the header must have 'descr', 'fortran_order' and 'shape'");
    while (i_ < s_.size() && s_[i_] == ' ') ++i_;
    if (i_ + 1 != s_.size() || s_[i_] != '\n')
      Fail("the header must end with spaces and one '\\n'");
    return h;
  }

 private:
  [[noreturn]] void Fail(const std::string& what) const {
    throw InputError(fmt::format("header byte {}: {}", i_, what), std::string(name_));
  }
  bool Peek(char c) const { return i_ < s_.size() && s_[i_] == c; }
  void Expect(char c) {
    if (!Peek(c)) Fail(fmt::format("expected '{}'", c));
    ++i_;
  }
  void Space() {
    while (i_ < s_.size() && s_[i_] == ' ') ++i_;
  }
  std::string String() {
    if (!Peek('\'') && !Peek('"')) Fail("expected a quoted string");
    const char quote = s_[i_++];
    const size_t end = s_.find(quote, i_);
    if (end == std::string_view::npos) Fail("unterminated string");
    std::string out(s_.substr(i_, end - i_));
    for (char c : out) {
      if (c < 0x20 || c > 0x7e || c == '\\')
        Fail("only plain ASCII is expected in a header string");
    }
    i_ = end + 1;
    return out;
  }
  bool Bool() {
    if (s_.substr(i_, 4) == "True") {
      i_ += 4;
      return true;
    }
    if (s_.substr(i_, 5) == "False") {
      i_ += 5;
      return false;
    }
    Fail("expected True or False");
  }
  int64_t Integer() {
    const size_t begin = i_;
    int64_t v = 0;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      if (v > (kMaxElements - (s_[i_] - '0')) / 10) Fail("a dimension is too large");
      v = v * 10 + (s_[i_++] - '0');
    }
    if (i_ == begin) Fail("expected a dimension (a non-negative integer)");
    if (Peek('L')) ++i_;  // Python 2's long, as old files have it
    return v;
  }
  // "()", "(3,)", "(3, 4)", "(3, 4,)": a tuple; "(3)" is an int in Python and refused.
  std::vector<int64_t> Tuple() {
    Expect('(');
    Space();
    std::vector<int64_t> dims;
    bool comma_after_last = false;
    while (!Peek(')')) {
      if (dims.size() >= static_cast<size_t>(kMaxRank)) Fail("too many dimensions");
      dims.push_back(Integer());
      Space();
      comma_after_last = Peek(',');
      if (comma_after_last) {
        ++i_;
        Space();
      } else if (!Peek(')')) {
        Fail("expected ',' or ')' in the shape");
      }
    }
    ++i_;
    if (dims.size() == 1 && !comma_after_last)
      Fail("a one-dimensional shape is written (n,): (n) is not a tuple");
    return dims;
  }

  std::string_view s_;
  std::string_view name_;
  size_t i_ = 0;
};

std::optional<ElementType> TypeFromDescr(const std::string& d) {
  if (d.size() < 3) return std::nullopt;
  const char order = d[0], kind = d[1];
  const std::string size = d.substr(2);
  if (order != '<' && order != '|' && order != '=') return std::nullopt;
  for (const TypeInfo& t : kTypes) {
    if (t.npy_kind != kind || size != std::to_string(t.size)) continue;
    if (order == '|' && t.size != 1 && kind != 'V') return std::nullopt;  // byte order matters
    return t.type;
  }
  return std::nullopt;
}

std::string DescrOf(ElementType t) {
  const TypeInfo& info = Info(t);
  if (!info.npy_kind) throw InputError(fmt::format("{} has no .npy spelling", info.name));
  return fmt::format("{}{}{}", info.size == 1 ? '|' : '<', info.npy_kind, info.size);
}

// Column-major data of `shape` into row-major order.
std::string FortranToC(std::string_view data, const std::vector<int64_t>& shape, int element) {
  std::string out(data.size(), '\0');
  const size_t rank = shape.size();
  const int64_t n = Elements(shape).value_or(0);
  std::vector<int64_t> index(rank, 0);
  for (int64_t c = 0; c < n; ++c) {
    // Row-major position c: index; its column-major offset: sum index[k] * prod(shape[0..k)).
    int64_t f = 0, stride = 1;
    for (size_t k = 0; k < rank; ++k) {
      f += index[k] * stride;
      stride *= shape[k];
    }
    std::memcpy(out.data() + c * element, data.data() + f * element, element);
    for (size_t k = rank; k-- > 0;) {
      if (++index[k] < shape[k]) break;
      index[k] = 0;
    }
  }
  return out;
}

}  // namespace

SafetensorsFile ParseSafetensors(std::shared_ptr<const std::string> bytes, std::string_view name) {
  const uint64_t size = bytes->size();
  return SafetensorsReader(std::move(bytes), name, size).Read();
}

namespace {

// Where a .npy file's data starts, what it holds, and how many bytes that takes.
struct NpyLayout {
  ElementType type = ElementType::kF32;
  std::vector<int64_t> shape;
  bool fortran_order = false;
  size_t data_begin = 0;
  uint64_t data_bytes = 0;
};

// `b` is the file, or its first NpyHeaderEnd bytes of a file of `file_size` bytes.
NpyLayout ParseNpyHeader(std::string_view b, uint64_t file_size, std::string_view name) {
  auto fail = [&](const std::string& what) -> InputError {
    return InputError(what, std::string(name));
  };
  if (b.size() < 10 || b.compare(0, 6, kNpyMagic) != 0) {
    if (b.compare(0, 2, "PK") == 0)
      throw fail("a zip archive (.npz?): unpack it, pipeproof reads .npy and .safetensors");
    throw fail("not a .npy file (it does not start with \"\\x93NUMPY\")");
  }
  const int major = static_cast<unsigned char>(b[6]), minor = static_cast<unsigned char>(b[7]);
  if (major < 1 || major > 3 || minor != 0)
    throw fail(fmt::format(".npy version {}.{} is not known (1.0, 2.0, 3.0 are)", major, minor));
  const size_t length_bytes = major == 1 ? 2 : 4;
  if (b.size() < 8 + length_bytes) throw fail("truncated before the header length");
  const size_t header_begin = 8 + length_bytes;
  const uint64_t header_length = NpyHeaderEnd(b) - header_begin;
  if (header_length > b.size() - header_begin || header_length > file_size - header_begin)
    throw fail(fmt::format("header length {} runs past the end of the file", header_length));
  const auto h = NpyHeaderParser(b.substr(header_begin, header_length), name).Parse();
  const auto type = TypeFromDescr(h.descr);
  if (!type) {
    throw fail(fmt::format(
        "descr {} is not one pipeproof reads: little-endian f2/f4/f8, i1..i8, u1..u8, b1, or '<V2' "
        "(bfloat16)",
        Quote(h.descr)));
  }
  const auto elements = Elements(h.shape);
  if (!elements) throw fail("the shape has too many elements");
  const size_t data_begin = header_begin + header_length;
  const uint64_t expected = static_cast<uint64_t>(*elements) * ElementSize(*type);
  if (file_size - data_begin != expected) {
    throw fail(fmt::format("{} elements of {} take {} bytes; the file has {} after its header",
                           *elements, h.descr, expected, file_size - data_begin));
  }
  return {*type, h.shape, h.fortran_order, data_begin, expected};
}

}  // namespace

StoredTensor ParseNpy(std::shared_ptr<const std::string> bytes, std::string_view name,
                      std::string tensor_name) {
  const NpyLayout layout = ParseNpyHeader(*bytes, bytes->size(), name);
  StoredTensor t;
  t.name = std::move(tensor_name);
  t.type = layout.type;
  t.shape = layout.shape;
  if (layout.fortran_order && layout.shape.size() > 1) {
    t.storage = std::make_shared<const std::string>(
        FortranToC(std::string_view(*bytes).substr(layout.data_begin), layout.shape, ElementSize(layout.type)));
    t.offset = 0;
  } else {
    t.storage = std::move(bytes);
    t.offset = layout.data_begin;
  }
  t.size = layout.data_bytes;
  return t;
}

std::string WriteSafetensors(const SafetensorsFile& file) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  uint64_t at = 0;
  for (const StoredTensor& t : file.tensors) {
    header[t.name] = {{"dtype", ElementTypeName(t.type)},
                      {"shape", t.shape},
                      {"data_offsets", {at, at + t.size}}};
    at += t.size;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8,
              ' ');  // the data starts 8-byte aligned, as the library writes it
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  out += text;
  for (const StoredTensor& t : file.tensors) out += t.bytes();
  return out;
}

std::string WriteNpy(const StoredTensor& t) {
  std::string shape;
  for (int64_t d : t.shape) shape += fmt::format("{}, ", d);
  if (shape.size() > 2) shape.resize(shape.size() - (t.shape.size() == 1 ? 1 : 2));
  std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}), }}",
                                 DescrOf(t.type), shape);
  const size_t unpadded = 6 + 2 + 2 + dict.size() + 1;
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict += '\n';
  std::string out = kNpyMagic;
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(dict.size() & 0xff);
  out += static_cast<char>(dict.size() >> 8);
  out += dict;
  out += t.bytes();
  return out;
}

namespace {

// No limit beyond the memory it needs: a dump is as large as the model it holds. But its header
// is checked against the file's size from its first bytes before the rest is read, so that a
// large file that is no tensor file, or whose header does not fit it, is refused at once.
std::shared_ptr<const std::string> ReadWhole(const std::filesystem::path& path) {
  const std::string p = path.string();
  constexpr std::string_view kWhat = "tensor dump";
  FilePrefix head = ReadFilePrefix(p, 12, kWhat);
  const bool npy = head.bytes.compare(0, 6, kNpyMagic) == 0;
  const uint64_t header_end = npy ? NpyHeaderEnd(head.bytes) : SafetensorsHeaderEnd(head.bytes);
  // A header length beyond the format's limit or the file: the parsers below refuse it as it is.
  if (header_end <= std::min<uint64_t>(head.file_size, kMaxSafetensorsHeader + 8)) {
    head = ReadFilePrefix(p, header_end, kWhat);
  }
  auto prefix = std::make_shared<const std::string>(std::move(head.bytes));
  if (npy) {
    ParseNpyHeader(*prefix, head.file_size, p);
  } else {
    SafetensorsReader(prefix, p, head.file_size).Read();
  }
  return std::make_shared<const std::string>(ReadFileBounded(p, std::numeric_limits<int64_t>::max(), kWhat));
}

bool HasSuffix(const std::string& s, std::string_view suffix) { return s.ends_with(suffix); }

void AddFile(TensorDump& dump, const std::filesystem::path& file, const std::string& prefix) {
  const std::string p = file.string();
  if (HasSuffix(p, ".safetensors")) {
    for (StoredTensor& t : ParseSafetensors(ReadWhole(file), p).tensors) {
      t.name = prefix.empty() ? t.name : prefix + "/" + t.name;
      dump.tensors.push_back(std::move(t));
    }
  } else {
    std::string name = prefix.empty() ? file.stem().string() : prefix;
    dump.tensors.push_back(ParseNpy(ReadWhole(file), p, std::move(name)));
  }
  ++dump.files;
}

}  // namespace

TensorDump ReadTensorDump(const std::string& path) {
  namespace fs = std::filesystem;
  TensorDump dump;
  dump.path = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    std::vector<fs::path> files;
    int64_t skipped = 0;
    for (auto it = fs::recursive_directory_iterator(path, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (!it->is_regular_file()) continue;
      const std::string p = it->path().string();
      if (HasSuffix(p, ".safetensors") || HasSuffix(p, ".npy")) {
        files.push_back(it->path());
      } else {
        ++skipped;
      }
    }
    if (ec) throw InputError(fmt::format("cannot list the directory: {}", ec.message()), path);
    if (files.empty()) throw InputError("no *.safetensors or *.npy files in this directory", path);
    std::sort(files.begin(), files.end());
    for (const fs::path& f : files) {
      fs::path relative = fs::relative(f, path);
      const std::string r = relative.string();
      AddFile(dump, f, r.substr(0, r.size() - (HasSuffix(r, ".npy") ? 4 : 12)));
    }
    if (skipped)
      dump.notes.push_back(fmt::format(
          "{}: {} files that are neither .safetensors nor .npy were skipped", path, skipped));
  } else if (fs::is_regular_file(path, ec)) {
    if (!HasSuffix(path, ".safetensors") && !HasSuffix(path, ".npy")) {
      // Decide by content: a safetensors header length, or the .npy magic.
      auto bytes = ReadWhole(path);
      if (bytes->compare(0, 6, kNpyMagic) == 0) {
        dump.tensors.push_back(ParseNpy(bytes, path, fs::path(path).stem().string()));
      } else {
        dump.tensors = ParseSafetensors(bytes, path).tensors;
      }
      dump.files = 1;
    } else {
      AddFile(dump, path, "");
    }
  } else if (const std::string kind = FileKind(path); kind == "nothing") {
    throw InputError("no such file or directory", path);
  } else {
    throw InputError(fmt::format("this is {}, not a tensor dump (a .safetensors or .npy file, or "
                                 "a directory of them)",
                                 kind),
                     path);
  }
  std::set<std::string> names;
  for (const StoredTensor& t : dump.tensors) {
    if (!names.insert(t.name).second)
      throw InputError(fmt::format("two tensors are named {}", Quote(t.name)), path);
  }
  return dump;
}

}  // namespace pipeproof
