// A pipeline-parallel training program in the style of the DualPipe reference, for testing the
// NCCL interposer: it runs a pipeproof schedule (generated, or read from a file, planted bugs and
// all) with one thread per rank over whatever libnccl.so.2 it is linked with or given (the
// stand-in in the tests), exactly as a user's program would: each WAIT posts the SEND/RECVs since
// the previous one as one ncclGroupStart/End group (batch_isend_irecv, then wait); a rank without
// WAITs makes every SEND/RECV a call of its own. Computes are elementwise arithmetic on the
// messages' values, so that every byte received feeds what the rank computes next; each rank
// prints a checksum of everything it computed, and every message carries its payload's identity
// in its first element so that a receive can tell when it got another message than it expected.
//
//   nccl_pipeline_program (--kind KIND -r R -m M | --schedule FILE) [--inference]
//       [--init rank|all|split] [--elements N] [--abort-at RANK:CALL] [--segv-at RANK:CALL]
//
// A message of microbatch m has N + m elements (N = --elements, default 64), so that a send that
// meets the receive of another microbatch disagrees in size. --inference runs the forward-only
// pass after the training pass, as `pipeproof run` does, so that a plan saved by `pipeproof run`
// for the same schedule names the same calls. --init picks how the communicator is made:
// ncclCommInitRank per thread, ncclCommInitAll, or ncclCommInitRank and then an ncclCommSplit
// that reverses the ranks (communicator rank = R-1-rank). --abort-at / --segv-at make a rank
// call abort() or dereference null just before its CALL-th send/receive.
// Exit status: 0, or 1 when a receive got another message than it expected.

#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "usercode/nccl_api.h"
#include "exec/run_plan.h"
#include "schedule/formats.h"
#include "schedule/generate.h"

namespace pipeproof {
namespace {

struct Options {
  std::string kind;
  int ranks = 0;
  int microbatches = 0;
  std::string schedule_path;
  bool inference = false;
  std::string init = "rank";
  int elements = 64;
  std::optional<std::pair<int, int>> abort_at, segv_at;
};

[[noreturn]] void Usage(const std::string& why) {
  std::fprintf(stderr, "nccl_pipeline_program: %s\n", why.c_str());
  std::exit(2);
}

std::pair<int, int> RankAndCall(const char* text) {
  int r = 0, k = 0;
  if (std::sscanf(text, "%d:%d", &r, &k) != 2)
    Usage(std::string("expected RANK:CALL, got ") + text);
  return {r, k};
}

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) Usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--kind")
      o.kind = value();
    else if (a == "-r")
      o.ranks = std::atoi(value());
    else if (a == "-m")
      o.microbatches = std::atoi(value());
    else if (a == "--schedule")
      o.schedule_path = value();
    else if (a == "--inference")
      o.inference = true;
    else if (a == "--init")
      o.init = value();
    else if (a == "--elements")
      o.elements = std::atoi(value());
    else if (a == "--abort-at")
      o.abort_at = RankAndCall(value());
    else if (a == "--segv-at")
      o.segv_at = RankAndCall(value());
    else
      Usage("unknown argument " + a);
  }
  if (o.kind.empty() == o.schedule_path.empty())
    Usage("give --kind KIND -r R -m M, or --schedule FILE");
  if (o.init != "rank" && o.init != "all" && o.init != "split") Usage("--init rank|all|split");
  return o;
}

void Check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) {
    std::fprintf(stderr, "nccl_pipeline_program: %s failed: %d\n", what, int(r));
    std::exit(3);
  }
}

// The value a message's first element carries: which payload it is.
double Tag(const Payload& p) {
  return (p.kind == Payload::Kind::kGradient ? 1e9 : 0) + p.from * 1e6 + p.to * 1e3 + p.microbatch;
}

using Key = std::pair<int, int>;  // (stage, microbatch)

class RankProgram {
 public:
  RankProgram(const Options& options, int rank, ncclComm_t comm, int reversed_ranks)
      : options_(options), rank_(rank), comm_(comm), reversed_(reversed_ranks) {}

  void RunPass(const Schedule& pass) {
    const RouteIndex routes(pass);
    const bool grouped = UsesWaits(pass);
    std::vector<Pending> pending;
    for (const Action& a : pass.program[rank_]) {
      if (a.op == Op::kWait) {
        Post(pending, /*group=*/true);
        continue;
      }
      if (IsComm(a.op)) {
        pending.push_back(Prepare(pass, routes, a));
        if (!grouped) Post(pending, /*group=*/false);
        continue;
      }
      for (int t = 0; t < a.TaskCount(); ++t) Compute(routes, a.TaskAt(t));
    }
  }

  double checksum() const { return checksum_; }
  int mixups() const { return mixups_; }

 private:
  struct Pending {
    bool send;
    int peer;
    Payload payload;
    std::vector<double>* buffer;
  };

  bool UsesWaits(const Schedule& pass) const {
    for (const Action& a : pass.program[rank_]) {
      if (a.op == Op::kWait) return true;
    }
    return false;
  }

  int Elements(int microbatch) const { return options_.elements + microbatch; }

  Pending Prepare(const Schedule& pass, const RouteIndex& routes, const Action& a) {
    const Task task{a.op, a.stage, a.microbatch};
    const std::optional<Message> m = MessageOf(pass, routes, task);
    if (!m) Usage("a SEND/RECV without a neighbour: " + ToString(a));
    Pending p{IsSend(a.op), m->peer, m->payload, nullptr};
    const Key key{a.stage, a.microbatch};
    switch (a.op) {
      case Op::kSendF:
        p.buffer = &Outgoing(activations_[key], p.payload);
        break;
      case Op::kSendB:
        p.buffer = &Outgoing(input_grads_[key], p.payload);
        break;
      case Op::kRecvF:
        p.buffer = &(received_inputs_[key] = std::vector<double>(Elements(a.microbatch)));
        break;
      case Op::kRecvB:
        p.buffer = &(received_grads_[key] = std::vector<double>(Elements(a.microbatch)));
        break;
      default:
        break;
    }
    return p;
  }

  // A copy of `values` with the payload's tag in front, kept alive until the group completes.
  std::vector<double>& Outgoing(const std::vector<double>& values, const Payload& payload) {
    std::vector<double> message(Elements(payload.microbatch), 0.0);
    for (size_t i = 1; i < message.size() && i < values.size(); ++i) message[i] = values[i];
    message[0] = Tag(payload);
    outgoing_.push_back(std::move(message));
    return outgoing_.back();
  }

  void Post(std::vector<Pending>& pending, bool group) {
    if (pending.empty()) return;
    if (group) Check(ncclGroupStart(), "ncclGroupStart");
    for (Pending& p : pending) {
      BeforeCall();
      const int peer = reversed_ > 0 ? reversed_ - 1 - p.peer : p.peer;
      const size_t count = static_cast<size_t>(Elements(p.payload.microbatch));
      if (p.send) {
        Check(ncclSend(p.buffer->data(), count, ncclFloat64, peer, comm_, nullptr), "ncclSend");
      } else {
        Check(ncclRecv(p.buffer->data(), count, ncclFloat64, peer, comm_, nullptr), "ncclRecv");
      }
    }
    if (group) Check(ncclGroupEnd(), "ncclGroupEnd");
    for (const Pending& p : pending) {
      if (!p.send && (*p.buffer)[0] != Tag(p.payload)) {
        ++mixups_;
        std::fprintf(stderr, "rank %d: expected %s, received another message (tag %.0f)\n", rank_,
                     ToString(p.payload).c_str(), (*p.buffer)[0]);
      }
    }
    pending.clear();
    outgoing_.clear();
  }

  void BeforeCall() {
    const int k = calls_++;
    if (options_.abort_at && options_.abort_at->first == rank_ && options_.abort_at->second == k)
      std::abort();
    if (options_.segv_at && options_.segv_at->first == rank_ && options_.segv_at->second == k) {
      volatile int* nowhere = nullptr;
      *nowhere = 1;
    }
  }

  // Inputs come from the previous stage's output on this rank, a receive, or the microbatch's data.
  std::vector<double> Input(const RouteIndex& routes, int stage, int mb) {
    const int prev = routes.Prev(stage, mb);
    if (prev >= 0) {
      if (auto it = activations_.find({prev, mb}); it != activations_.end()) return it->second;
      if (auto it = received_inputs_.find({stage, mb}); it != received_inputs_.end())
        return it->second;
    }
    std::vector<double> x(Elements(mb));
    for (size_t i = 0; i < x.size(); ++i) x[i] = mb + 0.001 * double(i);
    return x;
  }

  std::vector<double> OutputGrad(const RouteIndex& routes, int stage, int mb) {
    const int next = routes.Next(stage, mb);
    if (next >= 0) {
      if (auto it = input_grads_.find({next, mb}); it != input_grads_.end()) return it->second;
      if (auto it = received_grads_.find({stage, mb}); it != received_grads_.end())
        return it->second;
      return std::vector<double>(Elements(mb), 0.0);
    }
    return activations_[{stage, mb}];  // the loss's gradient, up to a constant
  }

  void Compute(const RouteIndex& routes, const Task& t) {
    const Key key{t.stage, t.microbatch};
    switch (t.op) {
      case Op::kForward: {
        std::vector<double> x = Input(routes, t.stage, t.microbatch);
        for (size_t i = 1; i < x.size(); ++i) x[i] = x[i] * 1.5 + t.stage;
        Sum(x);
        activations_[key] = std::move(x);
        break;
      }
      case Op::kBackward:
      case Op::kInputGrad: {
        std::vector<double> g = OutputGrad(routes, t.stage, t.microbatch);
        for (size_t i = 1; i < g.size(); ++i) g[i] = g[i] * 0.5 + t.stage;
        Sum(g);
        input_grads_[key] = std::move(g);
        if (t.op == Op::kBackward) WeightGrad(routes, t.stage, t.microbatch);
        break;
      }
      case Op::kWeightGrad:
        WeightGrad(routes, t.stage, t.microbatch);
        break;
      default:
        break;
    }
  }

  void WeightGrad(const RouteIndex& routes, int stage, int mb) {
    const std::vector<double> g = OutputGrad(routes, stage, mb);
    double w = 0;
    for (size_t i = 1; i < g.size(); ++i) w += g[i] * 1e-3;
    checksum_ += w * (stage + 1);
  }

  void Sum(const std::vector<double>& v) {
    for (size_t i = 1; i < v.size(); ++i) checksum_ += v[i] * 1e-6;
  }

  const Options& options_;
  const int rank_;
  const ncclComm_t comm_;
  const int reversed_;
  std::map<Key, std::vector<double>> activations_, input_grads_, received_inputs_, received_grads_;
  std::deque<std::vector<double>> outgoing_;
  double checksum_ = 0;
  int mixups_ = 0;
  int calls_ = 0;
};

Schedule LoadSchedule(const Options& o) {
  if (!o.schedule_path.empty()) return ReadScheduleFile(o.schedule_path);
  GenerateOptions g;
  g.kind = o.kind;
  g.ranks = o.ranks;
  g.microbatches = o.microbatches;
  return Generate(g);
}

int Main(int argc, char** argv) {
  const Options options = Parse(argc, argv);
  Schedule schedule;
  try {
    schedule = LoadSchedule(options);
  } catch (const std::exception& e) {
    Usage(e.what());
  }
  std::vector<Schedule> passes{schedule};
  if (options.inference) passes.push_back(ForwardOnly(schedule));
  const int R = schedule.ranks;

  std::vector<ncclComm_t> comms(R, nullptr);
  ncclUniqueId id;
  if (options.init == "all") {
    Check(ncclCommInitAll(comms.data(), R, nullptr), "ncclCommInitAll");
  } else {
    Check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  }
  std::vector<double> checksums(R);
  std::atomic<int> mixups{0};
  std::vector<std::thread> threads;
  for (int r = 0; r < R; ++r) {
    threads.emplace_back([&, r] {
      ncclComm_t root = comms[r];
      if (options.init != "all") Check(ncclCommInitRank(&root, R, id, r), "ncclCommInitRank");
      ncclComm_t comm = root;
      if (options.init == "split")
        Check(ncclCommSplit(root, 0, R - 1 - r, &comm, nullptr), "ncclCommSplit");
      RankProgram program(options, r, comm, options.init == "split" ? R : 0);
      for (const Schedule& pass : passes) program.RunPass(pass);
      checksums[r] = program.checksum();
      mixups += program.mixups();
      if (comm != root) Check(ncclCommDestroy(comm), "ncclCommDestroy");
      Check(ncclCommDestroy(root), "ncclCommDestroy");
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < R; ++r) std::printf("rank %d checksum %.17g\n", r, checksums[r]);
  std::printf("mixups %d\n", mixups.load());
  return mixups ? 1 : 0;
}

}  // namespace
}  // namespace pipeproof

int main(int argc, char** argv) { return pipeproof::Main(argc, argv); }
