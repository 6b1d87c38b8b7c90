#include "reference/tensor_files.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "reference/tensor_files_oracle.h"
#include "schedule/errors.h"

namespace pipeproof {
namespace {

std::string Floats(std::initializer_list<float> values) {
  std::string b(values.size() * 4, '\0');
  std::memcpy(b.data(), values.begin(), b.size());
  return b;
}

std::shared_ptr<const std::string> Bytes(std::string s) {
  return std::make_shared<const std::string>(std::move(s));
}

// A safetensors file with this header and `data`.
std::string Safetensors(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string SafetensorsError(const std::string& header, const std::string& data) {
  try {
    ParseSafetensors(Bytes(Safetensors(header, data)), "f.safetensors");
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(TensorFilesTest, SafetensorsRoundTrip) {
  SafetensorsFile f;
  f.metadata["format"] = "pt";
  f.tensors.push_back(MakeTensor("w", ElementType::kF32, {2, 2}, Floats({1, 2, 3, 4})));
  f.tensors.push_back(MakeTensor("empty", ElementType::kBF16, {0, 3}, ""));
  f.tensors.push_back(MakeTensor("step", ElementType::kI64, {}, std::string(8, '\x01')));
  const std::string bytes = WriteSafetensors(f);
  EXPECT_EQ((bytes.size() - 8 - 16 - 8) % 8, 0u) << "the data starts 8-byte aligned";
  const SafetensorsFile back = ParseSafetensors(Bytes(bytes), "f");
  ASSERT_EQ(back.tensors.size(), 3u);
  EXPECT_EQ(back.metadata, f.metadata);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_TRUE(SameTensor(back.tensors[i], f.tensors[i])) << f.tensors[i].name;
}

TEST(TensorFilesTest, SafetensorsRefusesWhatTheSpecForbids) {
  const std::string data = Floats({1, 2});
  const std::string entry = R"("dtype":"F32","shape":[2],"data_offsets":[0,8])";
  EXPECT_EQ(SafetensorsError("{\"a\":{" + entry + "}}  ", data), "");  // spaces may pad the header
  EXPECT_NE(SafetensorsError("{\"a\":{" + entry + "}}\n", data).find("padded with spaces only"),
            std::string::npos);
  EXPECT_NE(SafetensorsError(" {\"a\":{" + entry + "}}", data).find("must start with '{'"),
            std::string::npos);
  EXPECT_NE(
      SafetensorsError("{\"a\":{" + entry + "},\"a\":{" + entry + "}}", data).find("appears twice"),
      std::string::npos);
  EXPECT_NE(SafetensorsError(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data)
                .find("take 12 bytes"),
            std::string::npos);
  EXPECT_NE(SafetensorsError(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data)
                .find("no gap and no overlap"),
            std::string::npos);
  EXPECT_NE(SafetensorsError(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", data)
                .find("belong to none"),
            std::string::npos);
  EXPECT_NE(
      SafetensorsError(
          R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
          data)
          .find("no gap and no overlap"),
      std::string::npos);
  EXPECT_NE(SafetensorsError(R"({"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}})", data)
                .find("not one pipeproof reads"),
            std::string::npos);
  EXPECT_NE(SafetensorsError(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data)
                .find("non-negative"),
            std::string::npos);
  EXPECT_NE(
      SafetensorsError(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", data)
          .find("unknown key"),
      std::string::npos);
  EXPECT_NE(SafetensorsError(R"({"__metadata__":{"k":1}})", "").find("expected a string"),
            std::string::npos);
  std::string huge(8, '\xff');
  EXPECT_THROW(ParseSafetensors(Bytes(huge), "f"), InputError);
}

std::string NpyError(const std::string& bytes) {
  try {
    ParseNpy(Bytes(bytes), "a.npy", "a");
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

// An .npy file (version 1.0) with this header dict and data.
std::string Npy(const std::string& dict, const std::string& data) {
  std::string header = dict;
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  return out + header + data;
}

TEST(TensorFilesTest, NpyReadsWhatNumpyWrites) {
  const StoredTensor t =
      ParseNpy(Bytes(Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }",
                         Floats({1, 2, 3, 4}))),
               "a", "a");
  EXPECT_EQ(t.type, ElementType::kF32);
  EXPECT_EQ(t.shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(t.bytes(), Floats({1, 2, 3, 4}));
  // Column-major data comes out in row-major order.
  const StoredTensor f =
      ParseNpy(Bytes(Npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
                         Floats({1, 3, 2, 4}))),
               "a", "a");
  EXPECT_EQ(f.bytes(), Floats({1, 2, 3, 4}));
  // Raw 2-byte elements are bfloat16; Python 2's long dimensions read.
  const StoredTensor b =
      ParseNpy(Bytes(Npy("{'descr': '<V2', 'fortran_order': False, 'shape': (3L,), }",
                         std::string(6, '\0'))),
               "a", "a");
  EXPECT_EQ(b.type, ElementType::kBF16);
  EXPECT_EQ(b.shape, (std::vector<int64_t>{3}));
  const StoredTensor scalar = ParseNpy(
      Bytes(Npy("{'descr': '|b1', 'fortran_order': False, 'shape': (), }", "\x01")), "a", "a");
  EXPECT_EQ(scalar.elements(), 1);
  // What the writer writes reads back.
  const StoredTensor again = ParseNpy(Bytes(WriteNpy(f)), "a", "a");
  EXPECT_TRUE(SameTensor(again, f));
}

TEST(TensorFilesTest, NpyRefusesWhatItCannotReadFaithfully) {
  EXPECT_NE(NpyError(Npy("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", "abcd"))
                .find("not one pipeproof reads"),
            std::string::npos);
  EXPECT_NE(NpyError(Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2), }", "abcdefgh"))
                .find("(n) is not a tuple"),
            std::string::npos);
  EXPECT_NE(NpyError(Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", "abcd"))
                .find("unknown key"),
            std::string::npos);
  EXPECT_NE(NpyError(Npy("{'descr': '<f4', 'shape': (1,), }", "abcd")).find("must have"),
            std::string::npos);
  EXPECT_NE(NpyError(Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", "abcd"))
                .find("take 8 bytes"),
            std::string::npos);
  EXPECT_NE(
      NpyError(Npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", "abcd"))
          .find("quoted string"),
      std::string::npos);
  EXPECT_NE(NpyError("PK\x03\x04 an npz").find("zip archive"), std::string::npos);
  EXPECT_NE(NpyError(std::string("\x93NUMPY\x04\x00", 8) + "xx").find("version 4.0"),
            std::string::npos);
}

TEST(TensorFilesTest, DumpsNameTensorsSoThatFilesAndDirectoriesMatch) {
  namespace fs = std::filesystem;
  const std::string root = ::testing::TempDir() + "/pipeproof_dump_" + std::to_string(getpid());
  fs::create_directories(root + "/st");
  fs::create_directories(root + "/npy/rank0");
  SafetensorsFile f;
  f.tensors.push_back(MakeTensor("w", ElementType::kF32, {2}, Floats({1, 2})));
  std::ofstream(root + "/st/rank0.safetensors", std::ios::binary) << WriteSafetensors(f);
  std::ofstream(root + "/npy/rank0/w.npy", std::ios::binary) << WriteNpy(f.tensors[0]);
  std::ofstream(root + "/npy/README", std::ios::binary) << "not a tensor";
  const TensorDump st = ReadTensorDump(root + "/st"), npy = ReadTensorDump(root + "/npy");
  ASSERT_EQ(st.tensors.size(), 1u);
  ASSERT_EQ(npy.tensors.size(), 1u);
  EXPECT_EQ(st.tensors[0].name, "rank0/w");
  EXPECT_EQ(npy.tensors[0].name, "rank0/w");
  EXPECT_EQ(npy.notes.size(), 1u);
  EXPECT_EQ(ReadTensorDump(root + "/st/rank0.safetensors").tensors[0].name, "w");
  EXPECT_EQ(ReadTensorDump(root + "/npy/rank0/w.npy").tensors[0].name, "w");
  EXPECT_THROW(ReadTensorDump(root + "/nothing"), InputError);
  fs::remove_all(root);
}

// A large file whose header does not fit it is refused from its first bytes, not after reading
// it all: sparse 1 GiB files (no disk used) leave the process's peak memory where it was.
TEST(TensorFilesTest, AHeaderThatDoesNotFitItsFileIsRefusedBeforeTheRestIsRead) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(::testing::TempDir()) / "pipeproof_large_dumps";
  fs::create_directories(dir);
  StoredTensor w = MakeTensor("w", ElementType::kF32, {2}, RawBytes<float>({1, 2}));
  const std::string st = WriteSafetensors({{w}, {}});
  const std::string npy = WriteNpy(w);
  const std::vector<std::pair<std::string, std::string>> files = {
      {"junk.safetensors", ""}, {"junk.npy", ""}, {"tail.safetensors", st}, {"tail.npy", npy}};
  auto peak_kib = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
  };
  const long before = peak_kib();
  for (const auto& [name, head] : files) {
    const fs::path p = dir / name;
    {
      std::ofstream(p, std::ios::binary) << head;
    }
    fs::resize_file(p, uintmax_t{1} << 30);
    EXPECT_THROW(ReadTensorDump(p.string()), InputError) << name;
  }
  EXPECT_LT(peak_kib() - before, 256 * 1024) << "a refused file was read whole";
  fs::remove_all(dir);
}

// The fuzzers' seeds and past findings, replayed in the ordinary build.
TEST(TensorFilesTest, SeedCorporaAndRegressionsPassTheOracle) {
  for (const std::string format : {"safetensors", "npy"}) {
    for (const std::string kind : {"corpus", "regressions"}) {
      const std::filesystem::path d =
          std::filesystem::path(PIPEPROOF_SOURCE_DIR) / "fuzz" / kind / format;
      if (!std::filesystem::exists(d)) continue;
      for (const auto& e : std::filesystem::directory_iterator(d)) {
        std::ifstream in(e.path(), std::ios::binary);
        const std::string bytes((std::istreambuf_iterator<char>(in)), {});
        SCOPED_TRACE(e.path().string());
        if (format == "npy") {
          testing::CheckNpyReader(bytes);
        } else {
          testing::CheckSafetensorsReader(bytes);
        }
      }
    }
  }
}

}  // namespace
}  // namespace pipeproof
