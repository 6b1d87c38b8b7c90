#include "reference/tensor_diff.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "schedule/errors.h"

namespace pipeproof {
namespace {

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
  const auto t = MakeTensor("w", ElementType::kF32, {2, 3}, RawBytes<float>({1, 2, 3, 4, 5, 6}));
  const TensorDiff d = DiffTensors(Dump({t}), Dump({t}), {});
  EXPECT_TRUE(d.ok()) << d.Text();
  EXPECT_TRUE(DiffTensors(Dump({t}), Dump({t}), Exact()).ok());
}

TEST(TensorDiffTest, PointsAtTheElementInItsOwnShapeAndType) {
  std::vector<uint16_t> a(2 * 3 * 4, 0x3c00);  // f16 1.0
  std::vector<uint16_t> b = a;
  b[1 * 12 + 2 * 4 + 3] = 0x3c01;  // the next f16 after 1.0, at [1,2,3]
  const TensorDiff d =
      DiffTensors(Dump({MakeTensor("h", ElementType::kF16, {2, 3, 4}, RawBytes(a))}),
                  Dump({MakeTensor("h", ElementType::kF16, {2, 3, 4}, RawBytes(b))}), Exact());
  ASSERT_FALSE(d.ok());
  const TensorComparison& c = d.report.tensors[0];
  EXPECT_EQ(c.mismatches, 1);
  EXPECT_EQ(c.first_index, 23);
  ASSERT_TRUE(c.max_ulp);
  EXPECT_EQ(*c.max_ulp, 1u) << "one f16 ULP, not f32's";
  EXPECT_NE(c.note.find("F16 [2,3,4]; first mismatch at [1,2,3]"), std::string::npos) << c.note;
  // Within f16's default tolerance.
  EXPECT_TRUE(DiffTensors(Dump({MakeTensor("h", ElementType::kF16, {2, 3, 4}, RawBytes(a))}),
                          Dump({MakeTensor("h", ElementType::kF16, {2, 3, 4}, RawBytes(b))}), {})
                  .ok());
  const auto j = nlohmann::json::parse(d.Json());
  EXPECT_EQ(j["tensors"][0]["first"]["index_nd"], (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(j["tensors"][0]["a"]["dtype"], "F16");
}

// A mixed dump: the headline and the JSON give each type's tolerance, not one that fits none of
// the tensors, and each tensor's JSON says what it was compared under.
TEST(TensorDiffTest, AMixedDumpReportsTheToleranceOfEachType) {
  const auto f = MakeTensor("w", ElementType::kF32, {2}, RawBytes<float>({1, 2}));
  const auto i = MakeTensor("step", ElementType::kI64, {1}, RawBytes<int64_t>({7}));
  const auto i2 = MakeTensor("count", ElementType::kI64, {1}, RawBytes<int64_t>({8}));
  const TensorDiff d = DiffTensors(Dump({f, i, i2}), Dump({f, i, i2}), {});
  ASSERT_TRUE(d.ok()) << d.Text();
  const ComparePolicy f32 = DefaultPolicy(ElementType::kF32);
  EXPECT_NE(d.Text().find(fmt::format("per type: F32 tolerance (rtol {:g}, atol {:g}", f32.rtol, f32.atol)),
            std::string::npos)
      << d.Text();
  EXPECT_NE(d.Text().find("I64 tolerance (rtol 0, atol 0"), std::string::npos) << d.Text();
  const auto j = nlohmann::json::parse(d.Json());
  EXPECT_EQ(j["mode"], "per type");
  EXPECT_TRUE(j["rtol"].is_null());
  EXPECT_EQ(j["tolerances"]["F32"]["rtol"], f32.rtol);
  EXPECT_EQ(j["tolerances"]["I64"]["rtol"], 0);
  for (const auto& t : j["tensors"]) {
    EXPECT_EQ(t["tolerance"]["rtol"], t["name"] == "w" ? f32.rtol : 0.0) << t.dump();
  }
  // One type, or --exact: one policy, as before.
  EXPECT_EQ(nlohmann::json::parse(DiffTensors(Dump({f}), Dump({f}), {}).Json())["rtol"], f32.rtol);
  EXPECT_EQ(nlohmann::json::parse(DiffTensors(Dump({f, i}), Dump({f, i}), Exact()).Json())["mode"], "exact");
}

TEST(TensorDiffTest, WideIntegersCompareBitForBit) {
  const int64_t big = (int64_t{1} << 60) + 1;
  const TensorDiff d = DiffTensors(
      Dump({MakeTensor("i", ElementType::kI64, {2}, RawBytes<int64_t>({big, -3}))}),
      Dump({MakeTensor("i", ElementType::kI64, {2}, RawBytes<int64_t>({big + 1, -3}))}), Exact());
  ASSERT_FALSE(d.ok()) << "2^60 + 1 and 2^60 + 2 are one double apart from nothing";
  EXPECT_EQ(d.report.tensors[0].first_index, 0);
  EXPECT_EQ(*d.report.tensors[0].max_ulp, 1u);
}

TEST(TensorDiffTest, NamesShapesAndRenames) {
  const auto w = MakeTensor("rank0.w", ElementType::kF32, {2, 2}, RawBytes<float>({1, 2, 3, 4}));
  auto renamed = w;
  renamed.name = "rank0/w";
  auto transposed = MakeTensor("v", ElementType::kF32, {4, 1}, RawBytes<float>({1, 2, 3, 4}));
  auto v = MakeTensor("v", ElementType::kF32, {1, 4}, RawBytes<float>({1, 2, 3, 4}));
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
  const auto a = MakeTensor("w", ElementType::kF16, {2, 1}, RawBytes<uint16_t>({0x3c00, 0x4000}));
  const auto b = MakeTensor("w", ElementType::kF16, {2, 1}, RawBytes<uint16_t>({0x3c00, 0x4200}));
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

}  // namespace
}  // namespace pipeproof
