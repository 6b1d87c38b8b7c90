// `pipeproof verify` as a user runs it, process start included (issue 13's targets): throughput
// without a proof on files of 100k actions and more, and the certified proof's time and peak
// memory on DualPipe 64 x 1024 and on a file of about 4M actions, beside the full Z3 search where
// it finishes, and the proof of a deadlock in the 4M-action file (Z3 on its cycle). Each figure
// is the best of --repeats runs of the real binary (fork, exec, wait4 for the child's peak RSS);
// the machine is shared, so compare figures taken in one run.
//
//   verify_command_bench [--repeats N] [--quick]
#include <fmt/format.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <fstream>
#include <string>
#include <vector>

#include "schedule/formats.h"
#include "schedule/generate.h"

namespace {

struct Measured {
  double seconds = 1e300;
  double peak_mib = 0;
  int status = -1;
};

// Runs `pipeproof verify FILE ARGS`, its output thrown away.
Measured RunVerify(const std::string& file, const std::vector<std::string>& args) {
  std::vector<std::string> argv_text = {PIPEPROOF_BINARY, "verify", file};
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_text) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(stdout);  // else the child's freopen writes out what this process has buffered
  const auto start = std::chrono::steady_clock::now();
  const pid_t child = fork();
  if (child == 0) {
    std::freopen("/dev/null", "w", stdout);
    std::freopen("/dev/null", "w", stderr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  rusage usage{};
  wait4(child, &status, 0, &usage);
  Measured m;
  m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  m.peak_mib = usage.ru_maxrss / 1024.0;
  m.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return m;
}

// The schedule with its last rank's first SEND_B past the middle and the RECV_F after it
// swapped: the two ranks then each send before they receive, a deadlock whose proof is Z3 on
// the cycle's constraints alone, however large the file.
pipeproof::Schedule Deadlocked(pipeproof::Schedule s) {
  std::vector<pipeproof::Action>& program = s.program.back();
  auto send = std::find_if(program.begin() + program.size() / 2, program.end(),
                           [](const pipeproof::Action& a) { return a.op == pipeproof::Op::kSendB; });
  auto recv = std::find_if(send, program.end(), [](const pipeproof::Action& a) { return a.op == pipeproof::Op::kRecvF; });
  if (recv != program.end()) std::iter_swap(send, recv);
  return s;
}

Measured Best(int repeats, const std::string& file, const std::vector<std::string>& args) {
  Measured best;
  for (int k = 0; k < repeats; ++k) {
    const Measured m = RunVerify(file, args);
    if (m.seconds < best.seconds) best = m;
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pipeproof verify, process start included"};
  int repeats = 3;
  bool quick = false;
  app.add_option("--repeats", repeats, "runs per figure (the best counts)")->check(CLI::Range(1, 100));
  app.add_flag("--quick", quick, "skip the 4M-action file and the Z3 search");
  CLI11_PARSE(app, argc, argv);

  const std::filesystem::path dir = std::filesystem::temp_directory_path() / fmt::format("verify-bench-{}", getpid());
  std::filesystem::create_directories(dir);
  struct File {
    std::string label;
    pipeproof::GenerateOptions options;
    bool big;
    bool deadlocked = false;
  };
  const std::vector<File> files = {
      {"1f1b 8 x 2500", {.kind = "1f1b", .ranks = 8, .microbatches = 2500}, false},
      {"dualpipe 64 x 1024", {.kind = "dualpipe", .ranks = 64, .microbatches = 1024}, false},
      {"interleaved 16x1024", {.kind = "interleaved-1f1b", .ranks = 16, .microbatches = 1024}, false},
      {"1f1b 8 x 90000", {.kind = "1f1b", .ranks = 8, .microbatches = 90000}, true},
      {"same, deadlocked", {.kind = "1f1b"}, true, true},
  };
  fmt::print("{:<20} {:>9}  {:<14} {:>8} {:>10} {:>12}  {}\n", "schedule", "actions", "proof", "seconds",
             "peak MiB", "actions/s", "target");
  pipeproof::Schedule previous;  // a deadlocked entry plants its deadlock in the file before it
  for (const File& f : files) {
    if (quick && f.big) continue;
    pipeproof::Schedule s = f.deadlocked ? Deadlocked(std::move(previous)) : pipeproof::Generate(f.options);
    const std::string path = (dir / (f.options.kind + ".pps")).string();
    std::ofstream(path, std::ios::binary) << pipeproof::WritePps(s);
    const int64_t actions = s.ActionCount();
    // Issue 13's targets: no proof at 5M actions/s; certified, DualPipe 64 x 1024 in 5 s and
    // 1 GiB, a 4M-action file in 30 s and 4 GiB. A mode without a target text has none.
    struct Mode {
      const char* name;
      std::vector<std::string> args;
      int runs;
      std::function<bool(const Measured&)> target;
      const char* target_text;
    };
    const bool dualpipe = f.options.kind == "dualpipe";
    std::vector<Mode> modes = {
        {"none (--no-z3)", {"--no-z3"}, repeats, [&](const Measured& m) { return actions / m.seconds >= 5e6; },
         "5M actions/s"},
        {"certified", {}, repeats,
         [&](const Measured& m) {
           return (dualpipe ? m.seconds < 5 && m.peak_mib < 1024 : m.seconds < 30 && m.peak_mib < 4096) &&
                  m.status == (f.deadlocked ? 1 : 0);
         },
         dualpipe ? "< 5 s, < 1 GiB" : f.big ? "< 30 s, < 4 GiB" : ""}};
    // The full search, where it finishes in minutes: what the proof cost before it was certified.
    if (!quick && dualpipe) {
      modes.push_back({"Z3 search", {"--z3", "search", "--z3-timeout", "300"}, 1, {}, ""});
    }
    for (const Mode& mode : modes) {
      const Measured m = Best(mode.runs, path, mode.args);
      const std::string target =
          *mode.target_text ? fmt::format("{}: {}", mode.target_text, mode.target(m) ? "met" : "NOT met") : "";
      fmt::print("{:<20} {:>9}  {:<14} {:>8.3f} {:>10.0f} {:>12.0f}  {}{}\n", f.label, actions, mode.name, m.seconds,
                 m.peak_mib, actions / m.seconds, target, m.status == 0 ? "" : fmt::format(" (exit {})", m.status));
    }
    previous = std::move(s);
  }
  std::filesystem::remove_all(dir);
  return 0;
}
