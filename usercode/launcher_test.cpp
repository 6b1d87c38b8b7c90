// The launcher behind `pipeproof inject`, on a shell: exit statuses, signals, programs that cannot
// start, the environment it hands over, and the trace directory it prepares.
#include "usercode/launcher.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "schedule/errors.h"
#include "usercode/nccl_trace.h"

namespace pipeproof {
namespace {

namespace fs = std::filesystem;

std::string Scratch(const std::string& name) {
  return ::testing::TempDir() + "/pipeproof_" + std::to_string(::getpid()) + "_" + name;
}

std::vector<std::string> Shell(const std::string& script) { return {"/bin/sh", "-c", script}; }

TEST(LauncherTest, ReturnsTheProgramsExitStatus) {
  EXPECT_EQ(RunWithEnvironment(Shell("exit 0"), {}), 0);
  EXPECT_EQ(RunWithEnvironment(Shell("exit 3"), {}), 3);
}

TEST(LauncherTest, ASignalEndingTheProgramGives128PlusIt) {
  EXPECT_EQ(RunWithEnvironment(Shell("kill -TERM $$"), {}), 128 + SIGTERM);
  EXPECT_EQ(RunWithEnvironment(Shell("kill -KILL $$"), {}), 128 + SIGKILL);
}

TEST(LauncherTest, AProgramThatCannotStartIsBadInput) {
  try {
    RunWithEnvironment({"/nonexistent/pipeproof-program", "x"}, {});
    FAIL() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot run /nonexistent/pipeproof-program"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(RunWithEnvironment({}, {}), InputError);
}

TEST(LauncherTest, AddsTheEnvironmentForTheProgramOnly) {
  EXPECT_EQ(RunWithEnvironment(Shell("test \"$PIPEPROOF_LAUNCHER_TEST\" = 'a b'"),
                               {{"PIPEPROOF_LAUNCHER_TEST", "a b"}}),
            0);
  EXPECT_EQ(getenv("PIPEPROOF_LAUNCHER_TEST"), nullptr);
}

TEST(LauncherTest, TheCallersSignalHandlersComeBack) {
  struct sigaction before {};
  sigaction(SIGTERM, nullptr, &before);
  ASSERT_EQ(RunWithEnvironment(Shell("exit 0"), {}), 0);
  struct sigaction after {};
  sigaction(SIGTERM, nullptr, &after);
  EXPECT_EQ(after.sa_handler, before.sa_handler);
}

TEST(LauncherTest, AMissingInterposerIsBadInput) {
  EXPECT_THROW(FindInterposer("/nonexistent/libpipeproof_nccl.so"), InputError);
  LaunchOptions options;
  options.command = Shell("exit 0");
  options.library = "/nonexistent/libpipeproof_nccl.so";
  std::ostringstream notices;
  EXPECT_THROW(LaunchWithInterposer(options, notices), InputError);
}

TEST(LauncherTest, PreparingTheTraceDirectoryRemovesOldTracesOnly) {
  const std::string dir = Scratch("prepare") + "/traces";
  fs::create_directories(dir);
  std::ofstream(dir + "/rank0" + kTraceFileSuffix) << "old";
  std::ofstream(dir + "/notes.txt") << "kept";
  std::ostringstream notices;
  const std::string absolute = PrepareTraceDirectory(dir, notices);
  EXPECT_EQ(absolute, fs::absolute(dir).string());
  EXPECT_FALSE(fs::exists(dir + "/rank0" + kTraceFileSuffix));
  EXPECT_TRUE(fs::exists(dir + "/notes.txt"));
  EXPECT_NE(notices.str().find("removed 1 traces of an earlier run"), std::string::npos)
      << notices.str();
  fs::remove_all(Scratch("prepare"));
}

TEST(LauncherTest, HandsTheInterposerAndTraceDirectoryToTheProgram) {
  if (std::string(PIPEPROOF_INTERPOSER).empty()) GTEST_SKIP() << "built with PIPEPROOF_NCCL=OFF";
  const std::string dir = Scratch("launch");
  const std::string absolute = fs::absolute(dir).string();
  LaunchOptions options;
  options.library = PIPEPROOF_INTERPOSER;
  options.trace_dir = dir;
  options.delays = "host";
  options.quiet = true;
  options.command = Shell(
      "case \"$LD_PRELOAD\" in *libpipeproof_nccl.so*) ;; *) exit 10;; esac; "
      "test \"$PIPEPROOF_NCCL_TRACE_DIR\" = '" + absolute + "' || exit 11; "
      "test \"$PIPEPROOF_NCCL_DELAYS\" = host || exit 12; "
      "test \"$PIPEPROOF_NCCL_QUIET\" = 1 || exit 13; "
      "test -z \"$PIPEPROOF_NCCL_PLAN\" || exit 14; exit 5");
  std::ostringstream notices;
  const LaunchResult r = LaunchWithInterposer(options, notices);
  EXPECT_EQ(r.status, 5) << "10..14: a variable the program did not get";
  EXPECT_EQ(r.trace_dir, absolute);
  EXPECT_EQ(r.traces, 0) << "a shell makes no NCCL calls";
  EXPECT_TRUE(fs::is_directory(dir));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace pipeproof
