// `pipeproof diff` as a user runs it on tensor dumps.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/command_test_util.h"
#include "reference/tensor_files.h"

namespace pipeproof {
namespace {

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
    f.tensors.push_back(MakeTensor(name, ElementType::kF32, {2048, 4096}, RawBytes(values)));
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
  // Refused for the flags, before any file is looked at.
  const testing::CommandOutput both = testing::RunPipeproof("diff a b --exact --rtol 1");
  EXPECT_EQ(both.status, 2);
  EXPECT_NE(both.err.find("--exact and --rtol/--atol exclude each other"), std::string::npos) << both.err;
}

}  // namespace
}  // namespace pipeproof
