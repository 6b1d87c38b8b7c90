// The progress line: plain periodic lines off a terminal, a live line redrawn in place on one,
// nothing for short work, and its format.
#include "render/progress.h"

#include <gtest/gtest.h>

#include <chrono>
#include <sstream>
#include <thread>

namespace pipeproof {
namespace {

using namespace std::chrono_literals;

ProgressOptions Fast(ProgressMode mode, std::ostream& out) {
  ProgressOptions o;
  o.mode = mode;
  o.out = &out;
  o.fd = -1;
  o.quiet_s = 0;
  o.plain_every_s = 0.02;
  o.live_every_s = 0.02;
  o.width = 60;
  return o;
}

TEST(Progress, FormatsPhaseCountsNoteAndTime) {
  EXPECT_EQ(FormatProgress("verify", {"deadlock: Z3 encoding", 12, 32, ""}, 3.24),
            "verify: deadlock: Z3 encoding 12/32 (37%), 3.2 s");
  EXPECT_EQ(FormatProgress("fuzz", {"runs", 5, 0, "1 hang"}, 75), "fuzz: runs [1 hang], 1m15s");
  EXPECT_EQ(FormatProgress("run", {"", 0, 0, ""}, 0.5), "run, 0.5 s");
}

TEST(Progress, PlainModePrintsLinesPeriodicallyAndADoneLine) {
  std::ostringstream out;
  {
    Progress progress("verify", Fast(ProgressMode::kPlain, out));
    progress.Callback()("deadlock: Z3 solving", 0, 0);
    std::this_thread::sleep_for(120ms);
    progress.Update("memory", 4, 6);
    std::this_thread::sleep_for(60ms);
  }  // the destructor finishes
  const std::string text = out.str();
  EXPECT_NE(text.find("verify: deadlock: Z3 solving, "), std::string::npos) << text;
  EXPECT_NE(text.find("verify: memory 4/6 (66%), "), std::string::npos) << text;
  EXPECT_NE(text.find("verify: done, "), std::string::npos) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos) << "no terminal control off a terminal";
  EXPECT_EQ(text.back(), '\n');
}

TEST(Progress, LiveModeRedrawsOneLineAndErasesItWhenFinished) {
  std::ostringstream out;
  Progress progress("run", Fast(ProgressMode::kLive, out));
  progress.Update("executing", 10, 200);
  progress.SetNote("a note long enough to be cut at the width of sixty columns, surely");
  std::this_thread::sleep_for(100ms);
  progress.Finish();
  const std::string text = out.str();
  EXPECT_NE(text.find("\r\033[Krun: executing 10/200 (5%)"), std::string::npos) << text;
  EXPECT_EQ(text.find('\n'), std::string::npos) << "a live line never scrolls";
  EXPECT_TRUE(text.ends_with("\r\033[K")) << "the line is erased for what follows";
  // Every drawn line fits the width.
  size_t pos = 0;
  while ((pos = text.find("\r\033[K", pos)) != std::string::npos) {
    pos += 4;
    const size_t next = text.find('\r', pos);
    EXPECT_LE((next == std::string::npos ? text.size() : next) - pos, 59u);
  }
}

TEST(Progress, ShortWorkAndOffModePrintNothing) {
  std::ostringstream quiet_out, off_out;
  {
    ProgressOptions o = Fast(ProgressMode::kPlain, quiet_out);
    o.quiet_s = 30;
    Progress progress("verify", o);
    progress.Update("structure", 0, 6);
  }
  {
    Progress progress("verify", Fast(ProgressMode::kOff, off_out));
    progress.Update("structure", 0, 6);
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(quiet_out.str(), "");
  EXPECT_EQ(off_out.str(), "");
}

TEST(Progress, EnvironmentChoosesTheModeOfAnAutoProgress) {
  std::ostringstream out;
  ::setenv(kProgressVariable, "off", 1);
  ProgressOptions o = Fast(ProgressMode::kAuto, out);
  Progress off("x", o);
  EXPECT_EQ(off.mode(), ProgressMode::kOff);
  ::setenv(kProgressVariable, "plain", 1);
  Progress plain("x", o);
  EXPECT_EQ(plain.mode(), ProgressMode::kPlain);
  ::unsetenv(kProgressVariable);
  Progress not_a_terminal("x", o);  // fd -1 is no terminal
  EXPECT_EQ(not_a_terminal.mode(), ProgressMode::kPlain);
}

}  // namespace
}  // namespace pipeproof
