// `pipeproof inject` and `pipeproof trace check` end to end, on CPU: a DualPipe-style program
// (usercode/nccl_standin/pipeline_program.cpp) over the stand-in NCCL, with the interposer preloaded
// in front of it. Forwarding, delay placement, shuffles, trace contents, the signal path, and the
// analyzer on planted bugs.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/command_test_util.h"
#include "exec/fault_plan.h"
#include "usercode/nccl_trace.h"
#include "exec/run_plan.h"
#include "schedule/formats.h"
#include "schedule/generate.h"

namespace pipeproof {
namespace {

using testing::CommandOutput;
using testing::RunCommand;
using testing::ScratchPath;

using testing::Has;

// Ranks come from the communicator, not from a launcher's variables the test may run under.
const std::string kCleanEnv =
    "env -u RANK -u OMPI_COMM_WORLD_RANK -u PMI_RANK -u SLURM_PROCID -u PIPEPROOF_RANK ";

struct InjectedRun {
  CommandOutput out;
  std::string dir;
  std::vector<Trace> traces;
};

// `pipeproof inject [inject_args] -- program program_args`, with `env` in front.
InjectedRun Inject(const std::string& name, const std::string& inject_args,
                   const std::string& program_args, const std::string& env = "",
                   const std::string& prefix = "") {
  InjectedRun r;
  r.dir = ScratchPath(name);
  r.out = RunCommand(prefix + kCleanEnv + env + " " + PIPEPROOF_BINARY +
                     " inject --quiet --delays host --trace-dir " + r.dir + " " + inject_args +
                     " -- " + PIPEPROOF_PIPELINE_PROGRAM + " " + program_args);
  r.traces = ReadTraceDirectory(r.dir);
  return r;
}

CommandOutput Check(const InjectedRun& r, const std::string& args = "") {
  return testing::RunPipeproof("trace check " + r.dir + " " + args);
}

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = ScratchPath(name);
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

const char* kDualPipe = "--kind dualpipe -r 4 -m 8";

Schedule DualPipe() {
  GenerateOptions g;
  g.kind = "dualpipe";
  g.ranks = 4;
  g.microbatches = 8;
  return Generate(g);
}

// What rank `r` sends and receives, in program order, over the training pass and then the
// inference pass: (is send, peer, count).
std::vector<std::tuple<bool, int, uint64_t>> ExpectedCalls(const Schedule& s, int r) {
  std::vector<std::tuple<bool, int, uint64_t>> calls;
  for (const Schedule& pass : {s, ForwardOnly(s)}) {
    const RouteIndex routes(pass);
    for (const Action& a : pass.program[r]) {
      if (!IsComm(a.op)) continue;
      const auto m = MessageOf(pass, routes, {a.op, a.stage, a.microbatch});
      calls.emplace_back(IsSend(a.op), m->peer, 64 + a.microbatch);
    }
  }
  return calls;
}

TEST(NcclInjectTest, ForwardsEveryCallAndTracesIt) {
  const CommandOutput plain =
      RunCommand(std::string(PIPEPROOF_PIPELINE_PROGRAM) + " " + kDualPipe + " --inference");
  ASSERT_EQ(plain.status, 0) << plain.err;
  ASSERT_TRUE(Has(plain.out, "mixups 0"));
  const Schedule s = DualPipe();
  for (const std::string init : {"rank", "all", "split"}) {
    SCOPED_TRACE(init);
    const InjectedRun r =
        Inject("forward_" + init, "", std::string(kDualPipe) + " --inference --init " + init);
    ASSERT_EQ(r.out.status, 0) << r.out.err;
    EXPECT_EQ(r.out.out, plain.out) << "the program computed something else under the interposer";
    ASSERT_EQ(r.traces.size(), 4u);
    for (const Trace& t : r.traces) {
      const auto expected = ExpectedCalls(s, t.rank());
      ASSERT_EQ(t.calls.size(), expected.size()) << "rank " << t.rank();
      for (size_t k = 0; k < expected.size(); ++k) {
        const TraceCall& c = t.calls[k];
        const auto [send, peer, count] = expected[k];
        EXPECT_EQ(c.kind, static_cast<uint8_t>(send ? CallKind::kSend : CallKind::kRecv))
            << "rank " << t.rank() << " call " << k;
        EXPECT_EQ(c.peer, init == "split" ? 3 - peer : peer)
            << "rank " << t.rank() << " call " << k;
        EXPECT_EQ(c.count, count);
        EXPECT_EQ(c.dtype, 8);  // float64
        EXPECT_EQ(c.flags, kCallInGroup | kCallPosted | kCallCompleted);
        EXPECT_GE(c.t_complete, c.t_call);
        EXPECT_EQ(c.delay_us, 0u);
      }
      const TraceComm& comm = t.comms[t.calls[0].comm];
      EXPECT_EQ(comm.nranks, 4);
      EXPECT_EQ(comm.origin, static_cast<uint8_t>(init == "rank"  ? CommOrigin::kInitRank
                                                  : init == "all" ? CommOrigin::kInitAll
                                                                  : CommOrigin::kSplit));
      EXPECT_EQ(comm.rank, init == "split" ? 3 - t.rank() : t.rank());
      EXPECT_TRUE(comm.flags & kCommDestroyed);
      EXPECT_FALSE(t.ended_on_signal());
    }
    const CommandOutput check = Check(r, "--deadlock");
    EXPECT_EQ(check.status, 0) << check.out << check.err;
    EXPECT_TRUE(Has(check.out, "every send meets a receive")) << check.out;
    EXPECT_TRUE(Has(check.out, "none: this call order completes under every timing")) << check.out;
  }
}

TEST(NcclInjectTest, PlansSavedByRunApplyToTheSameCalls) {
  // The program runs DualPipe's calls as `pipeproof run` does: a plan it saves names them.
  const std::string plan = ScratchPath("run_plan.json");
  const CommandOutput saved = testing::RunPipeproof(
      std::string("run ") + kDualPipe +
      " --delay exp:100us --delay-at post --shuffle --seed 7 --save-plan " + plan);
  ASSERT_EQ(saved.status, 0) << saved.out << saved.err;
  const CommandOutput plain =
      RunCommand(std::string(PIPEPROOF_PIPELINE_PROGRAM) + " " + kDualPipe + " --inference");
  const InjectedRun r =
      Inject("run_plan", "--plan " + plan, std::string(kDualPipe) + " --inference");
  ASSERT_EQ(r.out.status, 0) << r.out.err;
  EXPECT_EQ(r.out.out, plain.out);
  const FaultPlan faults = ReadFaultPlan(plan);
  int shuffled_units = 0;
  for (const Trace& t : r.traces) {
    const RankFaults& f = faults.Rank(t.rank());
    ASSERT_EQ(t.calls.size(), f.post_delay_us.size())
        << "the plan counts the calls the program makes";
    for (size_t k = 0; k < t.calls.size(); ++k) EXPECT_EQ(t.calls[k].delay_us, f.post_delay_us[k]);
    for (const auto& u : f.unit_orders) {
      std::vector<uint32_t> posted;
      for (const TraceCall& c : t.calls) {
        if (c.unit == static_cast<uint64_t>(u.unit)) posted.push_back(c.posted_as);
      }
      ASSERT_EQ(posted.size(), u.order.size());
      for (size_t k = 0; k < u.order.size(); ++k)
        EXPECT_EQ(posted[u.order[k]], k) << "rank " << t.rank() << " unit " << u.unit;
      ++shuffled_units;
    }
  }
  EXPECT_GT(shuffled_units, 5);
  EXPECT_EQ(Check(r).status, 0);
}

TEST(NcclInjectTest, DelaysLandBeforeThePlannedCall) {
  const std::string plan =
      WriteFile("delay_plan.json", R"({"format": "pipeproof fault plan", "version": 1, "ranks": [
    {}, {"post_delay_us": [0, 0, 0, 0, 0, 300000]}]})");
  const auto start = std::chrono::steady_clock::now();
  const InjectedRun r = Inject("delay", "--plan " + plan, kDualPipe);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(r.out.status, 0) << r.out.err;
  EXPECT_GE(seconds, 0.3);
  for (const Trace& t : r.traces) {
    for (size_t k = 0; k < t.calls.size(); ++k) {
      EXPECT_EQ(t.calls[k].delay_us, t.rank() == 1 && k == 5 ? 300000u : 0u)
          << "rank " << t.rank() << " call " << k;
    }
  }
  const Trace& one = r.traces[1];
  ASSERT_GT(one.calls.size(), 6u);
  EXPECT_GE(one.calls[6].t_call - one.calls[5].t_call, 300'000'000u)
      << "call #6 came before #5's delay was over";
  EXPECT_LT(one.calls[5].t_call - one.calls[4].t_call, 300'000'000u)
      << "the delay came before call #5 was made";
  EXPECT_FALSE(one.header.flags & kTraceGpuDelays);
}

// Rank 0's first group of two sends and two receives to one peer, from a run without faults.
uint64_t TwoByTwoUnit(const Trace& t, uint64_t* first_call) {
  std::map<uint64_t, std::vector<size_t>> units;
  for (size_t k = 0; k < t.calls.size(); ++k) units[t.calls[k].unit].push_back(k);
  for (const auto& [u, calls] : units) {
    if (calls.size() != 4) continue;
    const auto kind = [&](size_t i) { return t.calls[calls[i]].kind; };
    if (kind(0) == 1 && kind(1) == 1 && kind(2) == 2 && kind(3) == 2) {
      *first_call = calls[0];
      return u;
    }
  }
  return ~uint64_t{0};
}

// What the stand-in saw rank 0 post, in order: "send 67", "recv 70", ...
std::vector<std::string> PostsOfRank0(const std::string& log) {
  std::vector<std::string> posts;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    int rank, peer;
    char kind[8];
    unsigned long long count;
    if (std::sscanf(line.c_str(), "rank %d post %7s peer %d count %llu", &rank, kind, &peer,
                    &count) == 4 &&
        rank == 0) {
      posts.push_back(std::string(kind) + " " + std::to_string(count));
    }
  }
  return posts;
}

TEST(NcclInjectTest, ShufflesFollowThePlanAndKeepEachChannelInOrder) {
  const InjectedRun plain = Inject("shuffle_plain", "", kDualPipe);
  uint64_t first = 0;
  const uint64_t unit = TwoByTwoUnit(plain.traces[0], &first);
  ASSERT_NE(unit, ~uint64_t{0}) << "DualPipe's rank 0 has a group of two sends and two receives";
  std::vector<std::string> program_order;
  for (size_t k = first; k < first + 4; ++k) {
    const TraceCall& c = plain.traces[0].calls[k];
    program_order.push_back(std::string(c.kind == 1 ? "send " : "recv ") + std::to_string(c.count));
  }
  // A legal order is followed as it is; reversing the unit would reorder both sends and both
  // receives of one channel, so each channel keeps its order in the slots the plan gives it.
  const std::vector<std::pair<std::string, std::vector<int>>> cases = {
      {"[2, 0, 3, 1]", {2, 0, 3, 1}}, {"[3, 2, 1, 0]", {2, 3, 0, 1}}};
  for (const auto& [order, posted] : cases) {
    SCOPED_TRACE(order);
    const std::string plan = WriteFile(
        "shuffle_plan.json", R"({"format": "pipeproof fault plan", "version": 1, "ranks": [
      {"unit_orders": [{"unit": )" +
                                 std::to_string(unit) + R"(, "order": )" + order + "}]}]}");
    const std::string log = ScratchPath("standin.log");
    std::filesystem::remove(log);
    const InjectedRun r =
        Inject("shuffle", "--plan " + plan, kDualPipe, "PIPEPROOF_STANDIN_LOG=" + log);
    ASSERT_EQ(r.out.status, 0) << r.out.err;
    EXPECT_EQ(r.out.out, plain.out.out);
    const std::vector<std::string> posts = PostsOfRank0(testing::ReadWhole(log));
    ASSERT_GE(posts.size(), first + 4);
    for (int k = 0; k < 4; ++k)
      EXPECT_EQ(posts[first + k], program_order[posted[k]]) << "post " << k;
    for (int k = 0; k < 4; ++k) {
      const TraceCall& c = r.traces[0].calls[first + posted[k]];
      EXPECT_EQ(c.posted_as, static_cast<uint32_t>(k));
      EXPECT_TRUE(c.flags & kCallShuffled);
    }
  }
}

TEST(NcclInjectTest, SignalsStillWriteEveryTrace) {
  // A rank that aborts or faults just before a call: the trace keeps every call before it.
  struct Crash {
    const char* name;
    const char* flag;
    int signal, rank;
    size_t calls;
  };
  for (const Crash& c : {Crash{"abort", "--abort-at", SIGABRT, 1, 5}, Crash{"segv", "--segv-at", SIGSEGV, 2, 3}}) {
    SCOPED_TRACE(c.name);
    const InjectedRun r =
        Inject(c.name, "", fmt::format("{} {} {}:{}", kDualPipe, c.flag, c.rank, c.calls));
    EXPECT_EQ(r.out.status, 128 + c.signal);
    ASSERT_EQ(r.traces.size(), 4u);
    EXPECT_EQ(r.traces[c.rank].header.end_signal, c.signal);
    EXPECT_EQ(r.traces[c.rank].calls.size(), c.calls);
  }
  {
    SCOPED_TRACE("SIGTERM mid-run");
    // 50 ms before every call: the run would take two seconds; it is ended after one.
    std::string delays = "[";
    for (int k = 0; k < 48; ++k) delays += (k ? ", " : "") + std::string("50000");
    delays += "]";
    std::string ranks;
    for (int r = 0; r < 4; ++r)
      ranks += (r ? ", " : "") + std::string("{\"post_delay_us\": ") + delays + "}";
    const std::string plan =
        WriteFile("slow_plan.json",
                  R"({"format": "pipeproof fault plan", "version": 1, "ranks": [)" + ranks + "]}");
    const InjectedRun r = Inject("term", "--plan " + plan, kDualPipe, "", "timeout -s TERM 1 ");
    EXPECT_EQ(r.out.status, 124) << r.out.err;
    ASSERT_EQ(r.traces.size(), 4u);
    for (const Trace& t : r.traces) {
      EXPECT_EQ(t.header.end_signal, SIGTERM);
      EXPECT_GT(t.calls.size(), 0u);
      const Schedule s = DualPipe();
      const auto all = std::count_if(s.program[t.rank()].begin(), s.program[t.rank()].end(),
                                     [](const Action& a) { return IsComm(a.op); });
      EXPECT_LT(t.calls.size(), static_cast<size_t>(all)) << "the run was not cut short";
    }
  }
}

TEST(NcclInjectTest, StoppedRankIsWhereTheHangStarts) {
  const std::string plan =
      WriteFile("kill_plan.json", R"({"format": "pipeproof fault plan", "version": 1,
    "kill": {"rank": 2, "action": 4}})");
  const InjectedRun r = Inject("kill", "--plan " + plan, kDualPipe, "", "timeout -s TERM 1 ");
  EXPECT_EQ(r.out.status, 124);
  ASSERT_EQ(r.traces.size(), 4u);
  ASSERT_EQ(r.traces[2].calls.size(), 5u);
  EXPECT_TRUE(r.traces[2].calls[4].flags & kCallStopped);
  const CommandOutput check = Check(r);
  EXPECT_EQ(check.status, 1);
  EXPECT_TRUE(Has(check.out, "rank 2 call #4")) << check.out;
  EXPECT_TRUE(Has(check.out, "the rank stopped dead here (the fault plan's kill)")) << check.out;
}

// The DualPipe schedule with rank `rank`'s program changed by `edit`.
std::string Planted(const std::string& name, int rank,
                    const std::function<void(std::vector<Action>&)>& edit) {
  Schedule s = DualPipe();
  edit(s.program[rank]);
  return WriteFile(name + ".pps", WritePps(s));
}

TEST(NcclInjectTest, TraceCheckFindsASwappedSend) {
  // Rank 0 sends microbatch 1's activation before microbatch 0's: NCCL has no tags, so each
  // arrives where the other was expected (sizes differ by construction: 64 + microbatch).
  const std::string file = Planted("swapped", 0, [](std::vector<Action>& p) {
    std::vector<size_t> sends;
    for (size_t i = 0; i < p.size(); ++i) {
      if (p[i].op == Op::kSendF) sends.push_back(i);
    }
    std::swap(p[sends[0]], p[sends[1]]);
  });
  const InjectedRun r = Inject("swapped", "", "--schedule " + file);
  EXPECT_EQ(r.out.status, 1) << "the program sees the mix-up itself";
  const CommandOutput check = Check(r, "--json");
  EXPECT_EQ(check.status, 1);
  const auto j = nlohmann::json::parse(check.out);
  ASSERT_FALSE(j["problems"].empty()) << check.out;
  const auto& p = j["problems"][0];
  EXPECT_EQ(p["kind"], "mismatch");
  EXPECT_EQ(p["call"]["rank"], 0);
  EXPECT_EQ(p["partner"]["rank"], 1);
  EXPECT_TRUE(Has(p["details"][0].get<std::string>(), "messages #0 and #1 are swapped"))
      << check.out;
}

TEST(NcclInjectTest, TraceCheckFindsAMissingReceive) {
  // Rank 1 forgets its first receive from rank 0: its receives meet rank 0's sends one too early,
  // and rank 0 is left with a send nobody receives.
  const std::string file = Planted("missing", 1, [](std::vector<Action>& p) {
    p.erase(std::find_if(p.begin(), p.end(), [](const Action& a) { return a.op == Op::kRecvF; }));
  });
  const InjectedRun r = Inject("missing", "", "--schedule " + file, "", "timeout -s TERM 1 ");
  EXPECT_EQ(r.out.status, 124) << "rendezvous: the unreceived send hangs";
  const CommandOutput check = Check(r);
  EXPECT_EQ(check.status, 1);
  EXPECT_TRUE(Has(check.out, "mismatch: rank 0 -> rank 1")) << check.out;
  EXPECT_TRUE(Has(check.out, "rank 1 is missing a receive for message #0")) << check.out;
  EXPECT_TRUE(Has(check.out, "hang: ")) << check.out;
}

TEST(NcclInjectTest, TraceCheckFindsTheCross) {
  const std::string cross = std::string(PIPEPROOF_SOURCE_DIR) + "/testdata/usercode/cross.pps";
  const InjectedRun hung = Inject("cross", "", "--schedule " + cross, "", "timeout -s TERM 1 ");
  EXPECT_EQ(hung.out.status, 124);
  const CommandOutput check = Check(hung);
  EXPECT_EQ(check.status, 1);
  EXPECT_TRUE(Has(check.out, "hang: ranks 0 and 1 wait for each other: a cross")) << check.out;
  EXPECT_TRUE(Has(check.out, "rank 0 call #1 (ncclSend 65 x float64 = 520 B to rank 1, group #1)"))
      << check.out;
  EXPECT_TRUE(Has(check.out, "each rank sends to the other before it receives, in separate groups"))
      << check.out;

  // With small sends buffered (as NCCL may buffer them) the same program completes; the run
  // looks clean, and only the schedule check shows the order can deadlock.
  const InjectedRun lucky =
      Inject("cross_eager", "", "--schedule " + cross, "PIPEPROOF_STANDIN_EAGER_BYTES=65536");
  EXPECT_EQ(lucky.out.status, 0) << lucky.out.err;
  EXPECT_EQ(Check(lucky).status, 0);
  const CommandOutput deadlock = Check(lucky, "--deadlock");
  EXPECT_EQ(deadlock.status, 1);
  EXPECT_TRUE(Has(deadlock.out, "this call order can deadlock")) << deadlock.out;
  EXPECT_TRUE(
      Has(deadlock.out, "rank 0 call #1 (ncclSend 65 x float64 = 520 B to rank 1, group #1)"))
      << deadlock.out;
}

}  // namespace
}  // namespace pipeproof
