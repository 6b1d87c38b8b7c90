#include "usercode/launcher.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "exec/fault_plan.h"
#include "schedule/errors.h"
#include "usercode/nccl_trace.h"

namespace pipeproof {
namespace {

namespace fs = std::filesystem;

pid_t g_child = 0;
void ForwardSignal(int sig) {
  if (g_child > 0) kill(g_child, sig);
}

int CountTraces(const std::string& dir) {
  std::error_code ec;
  return static_cast<int>(TraceFilesIn(dir, ec).size());
}

}  // namespace

std::string FindInterposer(const std::string& given) {
  std::string path = given;
  if (path.empty()) {
    if (const char* env = getenv("PIPEPROOF_NCCL_INTERPOSER"); env && *env) path = env;
  }
  if (path.empty()) {
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) path = (self.parent_path().parent_path() / "lib" / "libpipeproof_nccl.so").string();
  }
  std::error_code ec;
  if (path.empty() || !fs::is_regular_file(path, ec)) {
    throw InputError(fmt::format(
        "the NCCL interposer is not at {}: build the target pipeproof_nccl (it is left out with "
        "-DPIPEPROOF_NCCL=OFF), or give --library",
        path.empty() ? "its usual place" : path));
  }
  return fs::absolute(path).string();
}

std::string PrepareTraceDirectory(const std::string& dir, std::ostream& notices) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw InputError(fmt::format("cannot make the trace directory: {}", ec.message()), dir);
  int removed = 0;
  for (const std::string& trace : TraceFilesIn(dir, ec)) {
    fs::remove(trace, ec);
    ++removed;
  }
  if (removed)
    notices << fmt::format("pipeproof inject: removed {} traces of an earlier run from {}\n",
                           removed, dir);
  return fs::absolute(dir).string();
}

int RunWithEnvironment(const std::vector<std::string>& command,
                       const std::vector<std::pair<std::string, std::string>>& env) {
  if (command.empty()) throw InputError("no program to run");
  int error_pipe[2];
  if (pipe2(error_pipe, O_CLOEXEC) != 0) throw std::runtime_error(std::strerror(errno));
  const pid_t child = fork();
  if (child < 0) throw std::runtime_error(fmt::format("fork: {}", std::strerror(errno)));
  if (child == 0) {
    close(error_pipe[0]);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> argv;
    for (const std::string& a : command) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    const int e = errno;
    (void)!write(error_pipe[1], &e, sizeof e);
    _exit(127);
  }
  close(error_pipe[1]);
  int exec_errno = 0;
  const bool exec_failed = read(error_pipe[0], &exec_errno, sizeof exec_errno) == sizeof exec_errno;
  close(error_pipe[0]);
  // The terminal sends SIGINT and SIGQUIT to the whole process group, the child included: ignore
  // them here. SIGTERM and SIGHUP sent to this process alone are passed on. The caller's own
  // handlers come back once the child is gone.
  g_child = child;
  const auto old_int = signal(SIGINT, SIG_IGN);
  const auto old_quit = signal(SIGQUIT, SIG_IGN);
  const auto old_term = signal(SIGTERM, ForwardSignal);
  const auto old_hup = signal(SIGHUP, ForwardSignal);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  signal(SIGINT, old_int);
  signal(SIGQUIT, old_quit);
  signal(SIGTERM, old_term);
  signal(SIGHUP, old_hup);
  g_child = 0;
  if (exec_failed)
    throw InputError(fmt::format("cannot run {}: {}", command.front(), std::strerror(exec_errno)));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

LaunchResult LaunchWithInterposer(const LaunchOptions& options, std::ostream& notices) {
  if (options.command.empty()) throw InputError("no program to run");
  const std::string library = FindInterposer(options.library);
  std::vector<std::pair<std::string, std::string>> env;
  if (!options.plan.empty()) {
    const FaultPlan plan = ReadFaultPlan(options.plan);  // bad plans stop here, with exit 2
    notices << "pipeproof inject: fault plan " << options.plan << ": " << plan.Summary();
    env.push_back({"PIPEPROOF_NCCL_PLAN", fs::absolute(options.plan).string()});
  }
  LaunchResult result;
  result.trace_dir = PrepareTraceDirectory(options.trace_dir, notices);
  const char* preload = getenv("LD_PRELOAD");
  env.push_back({"LD_PRELOAD", preload && *preload ? library + ":" + preload : library});
  env.push_back({"PIPEPROOF_NCCL_TRACE_DIR", result.trace_dir});
  env.push_back({"PIPEPROOF_NCCL_DELAYS", options.delays});
  if (options.quiet) env.push_back({"PIPEPROOF_NCCL_QUIET", "1"});
  result.status = RunWithEnvironment(options.command, env);
  result.traces = CountTraces(result.trace_dir);
  return result;
}

}  // namespace pipeproof
