// Progress of long work (a large verify and its Z3 proof, `pipeproof run`, a fuzz campaign): a
// live line on a terminal, plain periodic lines when the output is a file or a pipe (CI logs).
//
// Where it lives and why: the printer is the library `pipeproof_progress`, which depends on
// nothing but the standard library. The libraries that do the long work (verify/, exec/) do not
// depend on it: they take a plain callback, `void(std::string_view phase, int64_t done, int64_t
// total)` (VerifyOptions::progress, RunOptions::progress, WatchdogOptions::progress), so the
// one-way dependencies (schedule <- verify, schedule <- reference <- exec, all <- render, fuzz,
// cli) stay as they are. Whoever runs the work from the top (cli/, fuzz/) makes a Progress and
// hands its Callback() down.
//
// Short work prints nothing: the first line comes only after `quiet_s`. A live line is redrawn in
// place (carriage return and erase) a few times a second, with the elapsed time ticking even
// while the work reports nothing (a long Z3 solve); Finish() erases it, so what the command
// prints next starts on a clean line. Plain lines come every `plain_every_s` seconds.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace pipeproof {

enum class ProgressMode {
  kAuto,  // live on a terminal, plain otherwise; the environment variable below overrides
  kLive,
  kPlain,
  kOff,
};

// PIPEPROOF_PROGRESS=live|plain|off|auto chooses the mode of every kAuto Progress.
inline constexpr const char* kProgressVariable = "PIPEPROOF_PROGRESS";

struct ProgressOptions {
  ProgressMode mode = ProgressMode::kAuto;
  std::ostream* out = nullptr;  // default: std::cerr
  int fd = 2;                   // the descriptor `out` writes to, to ask whether it is a terminal
  double quiet_s = 1.0;         // print nothing before the work has lasted this long
  double live_every_s = 0.2;    // redraw period of the live line
  double plain_every_s = 10.0;  // period of plain lines
  int width = 0;                // live line width; 0: the terminal's (or 100)
};

// The state one line shows.
struct ProgressState {
  std::string phase;
  int64_t done = 0;
  int64_t total = 0;  // 0: unknown
  std::string note;   // e.g. "3 hangs found"
};

// "verify: deadlock: Z3 encoding 12/32 (37%) [note], 3.2 s". Used by both modes.
std::string FormatProgress(std::string_view task, const ProgressState& state, double elapsed_s);

class Progress {
 public:
  // `task` names the work in every line ("verify", "run", "fuzz").
  explicit Progress(std::string task, ProgressOptions options = {});
  ~Progress();  // Finish()
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Thread-safe and cheap: stores the state for the next redraw.
  void Update(std::string_view phase, int64_t done = 0, int64_t total = 0);
  void SetNote(std::string_view note);
  // Prints `text` as a line of its own (the live line, erased first, comes back at the next
  // redraw), through the same stream, so that messages and progress never interleave mid-line.
  void Print(std::string_view text);
  // Stops the ticker. Live: erases the line. Plain: a last line, if any line was printed.
  void Finish();
  // For VerifyOptions::progress, RunOptions::progress and the like. Valid while this lives.
  std::function<void(std::string_view, int64_t, int64_t)> Callback();

  ProgressMode mode() const { return mode_; }  // kLive, kPlain or kOff once resolved

 private:
  void Tick();
  void Draw(bool last);
  double Elapsed() const;

  std::string task_;
  ProgressOptions options_;
  ProgressMode mode_;
  std::chrono::steady_clock::time_point start_;
  std::mutex mutex_;
  std::condition_variable wake_;
  ProgressState state_;
  bool finished_ = false;
  bool printed_ = false;
  std::thread ticker_;
};

}  // namespace pipeproof
