#include "render/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>

namespace pipeproof {
namespace {

// std::cerr flushes after every `<<`: the text and its newline written apart let another stream's
// output (a report on stdout, forwarded separately under mpirun) land between them, gluing lines.
void WriteLine(std::ostream& out, std::string_view text) {
  std::string line(text);
  line += '\n';
  out << line << std::flush;
}

ProgressMode ResolveMode(ProgressMode mode, int fd) {
  if (mode != ProgressMode::kAuto) return mode;
  if (const char* env = std::getenv(kProgressVariable)) {
    const std::string_view v = env;
    if (v == "live") return ProgressMode::kLive;
    if (v == "plain") return ProgressMode::kPlain;
    if (v == "off") return ProgressMode::kOff;
  }
  return ::isatty(fd) ? ProgressMode::kLive : ProgressMode::kPlain;
}

int TerminalWidth(int fd) {
  winsize size{};
  if (::ioctl(fd, TIOCGWINSZ, &size) == 0 && size.ws_col > 20) return size.ws_col;
  return 100;
}

std::string Seconds(double s) {
  char text[32];
  if (s < 60) {
    std::snprintf(text, sizeof text, "%.1f s", s);
  } else {
    std::snprintf(text, sizeof text, "%dm%02ds", static_cast<int>(s) / 60,
                  static_cast<int>(s) % 60);
  }
  return text;
}

}  // namespace

std::string FormatProgress(std::string_view task, const ProgressState& state, double elapsed_s) {
  std::string line(task);
  if (!state.phase.empty()) line += ": " + state.phase;
  if (state.total > 0) {
    const int64_t done = std::clamp<int64_t>(state.done, 0, state.total);
    line += " " + std::to_string(done) + "/" + std::to_string(state.total) + " (" +
            std::to_string(done * 100 / state.total) + "%)";
  }
  if (!state.note.empty()) line += " [" + state.note + "]";
  line += ", " + Seconds(elapsed_s);
  return line;
}

Progress::Progress(std::string task, ProgressOptions options)
    : task_(std::move(task)),
      options_(options),
      mode_(ResolveMode(options.mode, options.fd)),
      start_(std::chrono::steady_clock::now()) {
  if (options_.out == nullptr) options_.out = &std::cerr;
  if (options_.width <= 0 && mode_ == ProgressMode::kLive)
    options_.width = TerminalWidth(options_.fd);
  if (mode_ != ProgressMode::kOff) ticker_ = std::thread([this] { Tick(); });
}

Progress::~Progress() { Finish(); }

void Progress::Update(std::string_view phase, int64_t done, int64_t total) {
  std::lock_guard lock(mutex_);
  if (state_.phase != phase) state_.phase = std::string(phase);
  state_.done = done;
  state_.total = total;
}

void Progress::SetNote(std::string_view note) {
  std::lock_guard lock(mutex_);
  state_.note = std::string(note);
}

std::function<void(std::string_view, int64_t, int64_t)> Progress::Callback() {
  return
      [this](std::string_view phase, int64_t done, int64_t total) { Update(phase, done, total); };
}

double Progress::Elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::Tick() {
  const double period =
      mode_ == ProgressMode::kLive ? options_.live_every_s : options_.plain_every_s;
  std::unique_lock lock(mutex_);
  // The first line after the quiet time, then one per period.
  auto next = start_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                           std::chrono::duration<double>(options_.quiet_s));
  while (!finished_) {
    if (wake_.wait_until(lock, next, [&] { return finished_; })) break;
    Draw(/*last=*/false);
    next = std::chrono::steady_clock::now() +
           std::chrono::duration_cast<std::chrono::steady_clock::duration>(
               std::chrono::duration<double>(period));
  }
}

// Called with mutex_ held.
void Progress::Draw(bool last) {
  std::ostream& out = *options_.out;
  std::string line = FormatProgress(task_, state_, Elapsed());
  if (mode_ == ProgressMode::kLive) {
    if (last) {
      if (printed_) out << "\r\033[K" << std::flush;  // leave a clean line behind
      return;
    }
    const size_t width = static_cast<size_t>(std::max(options_.width - 1, 10));
    if (line.size() > width) line = line.substr(0, width - 3) + "...";
    out << "\r\033[K" << line << std::flush;
  } else {
    if (last && !printed_) return;  // short work: nothing at all
    if (last) line = FormatProgress(task_, {"done", 0, 0, ""}, Elapsed());
    WriteLine(out, line);
  }
  printed_ = true;
}

void Progress::Print(std::string_view text) {
  std::lock_guard lock(mutex_);
  std::ostream& out = *options_.out;
  if (mode_ == ProgressMode::kLive && printed_) out << "\r\033[K";
  WriteLine(out, text);
}

void Progress::Finish() {
  {
    std::lock_guard lock(mutex_);
    if (finished_) return;
    finished_ = true;
  }
  wake_.notify_all();
  if (ticker_.joinable()) ticker_.join();
  std::lock_guard lock(mutex_);
  if (mode_ != ProgressMode::kOff) Draw(/*last=*/true);
}

}  // namespace pipeproof
