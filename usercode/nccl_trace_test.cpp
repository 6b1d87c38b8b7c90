#include "usercode/nccl_trace.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "usercode/nccl_trace_oracle.h"
#include "usercode/trace_test_util.h"
#include "schedule/errors.h"

namespace pipeproof {
namespace {

using testing::Recv;
using testing::Send;
using testing::TraceBuilder;

Trace Sample() {
  return TraceBuilder(1, 2)
      .Unit({Send(0), Recv(0, 128)})
      .Unit({Send(0)}, /*completed=*/false, /*group=*/false)
      .Build();
}

std::string ErrorOf(const std::string& bytes) {
  try {
    ParseTrace(bytes, "t.pptrace");
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(NcclTraceTest, RoundTripsByteForByte) {
  const Trace t = Sample();
  const std::string bytes = EncodeTrace(t);
  EXPECT_EQ(bytes.size(), 128u + 48u + 3u * 64u);  // 64 bytes per call
  const Trace back = ParseTrace(bytes, "t.pptrace");
  EXPECT_EQ(back.rank(), 1);
  EXPECT_EQ(back.host(), "testhost");
  ASSERT_EQ(back.calls.size(), 3u);
  EXPECT_EQ(back.calls[1].count, 128u);
  EXPECT_EQ(EncodeTrace(back), bytes);
}

TEST(NcclTraceTest, RefusesWhatTheInterposerCannotWrite) {
  const std::string good = EncodeTrace(Sample());
  auto patched = [&](size_t at, const void* value, size_t n) {
    std::string b = good;
    std::memcpy(b.data() + at, value, n);
    return b;
  };
  constexpr size_t kCalls = 128 + 48;
  const uint32_t seven = 7, big = 99;
  const uint8_t three = 3, bad_flags = 0x80;
  const uint64_t unit5 = 5;
  EXPECT_NE(ErrorOf("short").find("shorter than its 128-byte header"), std::string::npos);
  EXPECT_NE(ErrorOf(patched(0, "XXXXXXXX", 8)).find("not a pipeproof NCCL trace"),
            std::string::npos);
  EXPECT_NE(ErrorOf(patched(8, &seven, 2)).find("version 7"), std::string::npos);
  EXPECT_NE(ErrorOf(good.substr(0, good.size() - 1)).find("the file has"), std::string::npos);
  EXPECT_NE(ErrorOf(patched(kCalls + 0, &three, 1)).find("call #0: kind 3"), std::string::npos);
  EXPECT_NE(ErrorOf(patched(kCalls + 2, &bad_flags, 1)).find("call #0: unknown flags"),
            std::string::npos);
  EXPECT_NE(ErrorOf(patched(kCalls + 4, &big, 4)).find("call #0: communicator #99"),
            std::string::npos);
  EXPECT_NE(ErrorOf(patched(kCalls + 8, &big, 4)).find("peer 99 is not a rank"), std::string::npos);
  EXPECT_NE(ErrorOf(patched(kCalls + 64 + 32, &unit5, 8)).find("unit 5 skips unit"),
            std::string::npos);
  // Two calls posted in one place of their group.
  const uint32_t zero = 0;
  EXPECT_NE(ErrorOf(patched(kCalls + 64 + 44, &zero, 4)).find("twice"), std::string::npos);
  // Completed without a posting place.
  const uint32_t not_posted = kNotPosted;
  EXPECT_NE(ErrorOf(patched(kCalls + 44, &not_posted, 4)).find("posting place"), std::string::npos);
  for (size_t cut = 0; cut < good.size(); cut += 7) {
    testing::CheckTraceReader(
        good.substr(0, cut));  // aborts on anything but InputError or a round trip
  }
}

TEST(NcclTraceTest, DirectoryRefusesTwoTracesOfOneRank) {
  const std::string dir = ::testing::TempDir() + "/pipeproof_traces_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  const std::string bytes = EncodeTrace(Sample());
  std::ofstream(dir + "/" + TraceFileName(1, 10), std::ios::binary) << bytes;
  EXPECT_EQ(ReadTraceDirectory(dir).size(), 1u);
  std::ofstream(dir + "/" + TraceFileName(1, 11), std::ios::binary) << bytes;
  try {
    ReadTraceDirectory(dir);
    ADD_FAILURE() << "two traces of rank 1 were accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("both hold rank 1"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
  EXPECT_THROW(ReadTraceDirectory(dir), InputError);
}

// The fuzzer's seeds and past findings, replayed in the ordinary build.
TEST(NcclTraceTest, SeedCorpusAndRegressionsPassTheOracle) {
  for (const char* sub : {"corpus/nccl_trace", "regressions/nccl_trace"}) {
    const std::filesystem::path d = std::filesystem::path(PIPEPROOF_SOURCE_DIR) / "fuzz" / sub;
    if (!std::filesystem::exists(d)) continue;
    for (const auto& e : std::filesystem::directory_iterator(d)) {
      std::ifstream in(e.path(), std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(in)), {});
      SCOPED_TRACE(e.path().string());
      testing::CheckTraceReader(bytes);
    }
  }
}

}  // namespace
}  // namespace pipeproof
