#include "schedule/read_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "schedule/errors.h"

namespace pipeproof {
namespace {

std::string Refusal(const std::string& path, int64_t max_bytes) {
  try {
    ReadFileBounded(path, max_bytes, "schedule");
  } catch (const InputError& e) {
    EXPECT_EQ(e.location(), path);
    return e.message();
  }
  return "";
}

TEST(ReadFileTest, ReadsARegularFileWithinItsBound) {
  const std::string path = ::testing::TempDir() + "/read_file_" + std::to_string(::getpid());
  std::ofstream(path, std::ios::binary) << "rank 0: 0F0 0B0\n";
  EXPECT_EQ(ReadFileBounded(path, 100, "schedule"), "rank 0: 0F0 0B0\n");
  EXPECT_EQ(FileKind(path), "");
  EXPECT_EQ(Refusal(path, 4), "the file is 16 bytes, more than the limit of 4 for a schedule");
  std::filesystem::remove(path);
}

// What is not a file is named, before anything is read: /dev/zero would never end.
TEST(ReadFileTest, WhatIsNotAFileIsRefusedByName) {
  EXPECT_EQ(Refusal("/dev/zero", 1 << 20), "this is a character device, not a schedule file");
  EXPECT_EQ(Refusal(::testing::TempDir(), 1 << 20), "this is a directory, not a schedule file");
  EXPECT_EQ(Refusal("/nonexistent/x", 1 << 20), "cannot read the schedule: No such file or directory");
  const std::string fifo = ::testing::TempDir() + "/read_file_fifo_" + std::to_string(::getpid());
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(Refusal(fifo, 1 << 20), "this is a pipe, not a schedule file");
  std::filesystem::remove(fifo);
  EXPECT_EQ(FileKind("/nonexistent/x"), "nothing");
}

}  // namespace
}  // namespace pipeproof
