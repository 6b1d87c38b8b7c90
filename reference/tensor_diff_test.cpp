#include "reference/tensor_diff.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/command_test_util.h"
#include "schedule/schedule.h"

namespace pipeproof {
namespace {

template <typename T>
std::string Raw(const std::vector<T>& values) {
  std::string b(values.size() * sizeof(T), '\0');
  std::memcpy(b.data(), values.data(), b.size());
  return b;
}

DiffOptions Exact() {
  DiffOptions o;
  o.exact = true;
  return o;
}

TensorDump Dump(std::vector<StoredTensor> tensors) {
  TensorDump d;
  d.path = "dump";
  d.tensors = std::move(tensors);
  return d;
}

TEST(TensorDiffTest, EqualDumpsMatch) {
  const auto t = MakeTensor("w", ElementType::kF32, {2, 3}, Raw<float>({1, 2, 3, 4, 5, 6}));
  const TensorDiff d = DiffTensors(Dump({t}), Dump({t}), {});
  EXPECT_TRUE(d.ok()) << d.Text();
  EXPECT_TRUE(DiffTensors(Dump({t}), Dump({t}), Exact()).ok());
}

TEST(TensorDiffTest, PointsAtTheElementInItsOwnShapeAndType) {
  std::vector<uint16_t> a(2 * 3 * 4, 0x3c00);  // f16 1.0
  std::vector<uint16_t> b = a;
  b[1 * 12 + 2 * 4 + 3] = 0x3c01;  // the next f16 after 1.0, at [1,2,3]
  const TensorDiff d =
      DiffTensors(Dump({MakeTensor("h", ElementType::kF16, {2, 3, 4}, Raw(a))}),
                  Dump({MakeTensor("h", ElementType::kF16, {2, 3, 4}, Raw(b))}), Exact());
  ASSERT_FALSE(d.ok());
  const TensorComparison& c = d.report.tensors[0];
  EXPECT_EQ(c.mismatches, 1);
  EXPECT_EQ(c.first_index, 23);
  ASSERT_TRUE(c.max_ulp);
  EXPECT_EQ(*c.max_ulp, 1u) << "one f16 ULP, not f32's";
  EXPECT_NE(c.note.find("F16 [2,3,4]; first mismatch at [1,2,3]"), std::string::npos) << c.note;
  // Within f16's default tolerance.
  EXPECT_TRUE(DiffTensors(Dump({MakeTensor("h", ElementType::kF16, {2, 3, 4}, Raw(a))}),
                          Dump({MakeTensor("h", ElementType::kF16, {2, 3, 4}, Raw(b))}), {})
                  .ok());
  const auto j = nlohmann::json::parse(d.Json());
  EXPECT_EQ(j["tensors"][0]["first"]["index_nd"], (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(j["tensors"][0]["a"]["dtype"], "F16");
}

TEST(TensorDiffTest, WideIntegersCompareBitForBit) {
  const int64_t big = (int64_t{1} << 60) + 1;
  const TensorDiff d = DiffTensors(
      Dump({MakeTensor("i", ElementType::kI64, {2}, Raw<int64_t>({big, -3}))}),
      Dump({MakeTensor("i", ElementType::kI64, {2}, Raw<int64_t>({big + 1, -3}))}), Exact());
  ASSERT_FALSE(d.ok()) << "2^60 + 1 and 2^60 + 2 are one double apart from nothing";
  EXPECT_EQ(d.report.tensors[0].first_index, 0);
  EXPECT_EQ(*d.report.tensors[0].max_ulp, 1u);
}

TEST(TensorDiffTest, NamesShapesAndRenames) {
  const auto w = MakeTensor("rank0.w", ElementType::kF32, {2, 2}, Raw<float>({1, 2, 3, 4}));
  auto renamed = w;
  renamed.name = "rank0/w";
  auto transposed = MakeTensor("v", ElementType::kF32, {4, 1}, Raw<float>({1, 2, 3, 4}));
  auto v = MakeTensor("v", ElementType::kF32, {1, 4}, Raw<float>({1, 2, 3, 4}));
  const TensorDiff plain = DiffTensors(Dump({w, v}), Dump({renamed, transposed}), {});
  const std::string text = plain.Text();
  EXPECT_EQ(plain.report.MismatchingTensors(), 3) << text;
  EXPECT_NE(text.find("only in A"), std::string::npos) << text;
  EXPECT_NE(text.find("only in B"), std::string::npos) << text;
  EXPECT_NE(text.find("shape [1,4] in A, [4,1] in B"), std::string::npos) << text;
  DiffOptions mapped;
  mapped.renames.push_back(ParseRename("rank0.*=rank0/*"));
  const TensorDiff d = DiffTensors(Dump({w}), Dump({renamed}), mapped);
  EXPECT_TRUE(d.ok()) << d.Text();
  EXPECT_EQ(d.report.tensors[0].name, "rank0.w -> rank0/w");
  EXPECT_THROW(ParseRename("a*=b"), InputError);
  EXPECT_THROW(ParseRename("ab"), InputError);
}

TEST(TensorDiffTest, EveryComparedPairIsShownToTheCaller) {
  const auto a = MakeTensor("w", ElementType::kF16, {2, 1}, Raw<uint16_t>({0x3c00, 0x4000}));
  const auto b = MakeTensor("w", ElementType::kF16, {2, 1}, Raw<uint16_t>({0x3c00, 0x4200}));
  int seen = 0;
  DiffTensors(Dump({a}), Dump({b}), {},
              [&](const TensorComparison& c, const HostTensor& run, const HostTensor& ref,
                  const ComparePolicy&) {
                ++seen;
                EXPECT_EQ(c.name, "w");
                EXPECT_EQ(run.At(1), 3.0);  // B is the run
                EXPECT_EQ(ref.At(1), 2.0);
              });
  EXPECT_EQ(seen, 1);
}

// The whole command on a 64 MiB safetensors dump with one flipped bit: found, named, and fast.
TEST(TensorDiffTest, DiffFindsOneFlippedBitInALargeDump) {
  namespace fs = std::filesystem;
  const std::string dir = testing::ScratchPath("bitflip");
  fs::create_directories(dir);
  uint64_t state = 7;  // xorshift: gradient-like values in (-0.05, 0.05), cheap to make
  SafetensorsFile f;
  for (const char* name : {"layers.0.mlp.weight", "layers.1.mlp.weight"}) {
    std::vector<float> values(2048 * 4096);
    for (float& v : values) {
      state ^= state << 13, state ^= state >> 7, state ^= state << 17;
      v = static_cast<float>(static_cast<int64_t>(state % 100001) - 50000) * 1e-6f;
    }
    f.tensors.push_back(MakeTensor(name, ElementType::kF32, {2048, 4096}, Raw(values)));
  }
  const std::string a = WriteSafetensors(f);
  ASSERT_GE(a.size(), 64u << 20);
  std::ofstream(dir + "/a.safetensors", std::ios::binary) << a;
  // Bit 0 of element [1234, 567] of the second tensor: one ULP, visible only bit for bit.
  std::string b = a;
  const size_t data = 8 + (static_cast<size_t>(static_cast<unsigned char>(a[0])) |
                           size_t(static_cast<unsigned char>(a[1])) << 8);
  const size_t at = data + size_t{2048} * 4096 * 4 + (size_t{1234} * 4096 + 567) * 4;
  b[at] ^= 1;
  std::ofstream(dir + "/b.safetensors", std::ios::binary) << b;

  const auto exact = testing::RunPipeproof("diff " + dir + "/a.safetensors " + dir +
                                           "/b.safetensors --exact --json " + dir +
                                           "/r.json --html " + dir + "/r.html");
  EXPECT_EQ(exact.status, 1) << exact.out << exact.err;
  EXPECT_LT(exact.seconds, 10);
  EXPECT_NE(exact.out.find("1 of 2 tensors differ"), std::string::npos) << exact.out;
  EXPECT_NE(
      exact.out.find("layers.1.mlp.weight [2048x4096]: 1 of 8388608 differ; first [1234,567]"),
      std::string::npos)
      << exact.out;
  EXPECT_NE(exact.out.find("max ulp 1"), std::string::npos) << exact.out;
  const auto j = nlohmann::json::parse(testing::ReadWhole(dir + "/r.json"));
  EXPECT_EQ(j["tensors"][0]["name"], "layers.1.mlp.weight");
  EXPECT_EQ(j["tensors"][0]["first"]["index"], 1234 * 4096 + 567);
  const std::string html = testing::ReadWhole(dir + "/r.html");
  EXPECT_NE(html.find("MISMATCH: 1 of 2 tensors differ"), std::string::npos);
  EXPECT_NE(html.find("<svg"), std::string::npos) << "a heatmap of the differing tensor";
  // The default tolerance does not see one ULP; it sees a flip in the top of the mantissa.
  EXPECT_EQ(
      testing::RunPipeproof("diff " + dir + "/a.safetensors " + dir + "/b.safetensors").status, 0);
  b[at] ^= 1;
  b[at + 2] ^= 0x40;  // mantissa bit 22
  std::ofstream(dir + "/b.safetensors", std::ios::binary) << b;
  const auto tolerance =
      testing::RunPipeproof("diff " + dir + "/a.safetensors " + dir + "/b.safetensors");
  EXPECT_EQ(tolerance.status, 1) << tolerance.out;
  EXPECT_NE(tolerance.out.find("first [1234,567]"), std::string::npos) << tolerance.out;
  std::printf("pipeproof diff --exact on 2 x %.0f MiB: %.2f s; with tolerances: %.2f s\n",
              a.size() / 1048576.0, exact.seconds, tolerance.seconds);
  fs::remove_all(dir);
}

TEST(TensorDiffTest, CommandRefusesBadInput) {
  EXPECT_EQ(testing::RunPipeproof("diff /nonexistent/a /nonexistent/b").status, 2);
  EXPECT_EQ(testing::RunPipeproof("diff a b --exact --rtol 1").status, 2);
}

}  // namespace
}  // namespace pipeproof
