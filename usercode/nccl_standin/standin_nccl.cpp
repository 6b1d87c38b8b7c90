// A stand-in for libnccl.so.2 for tests on machines without GPUs: the communicator and
// point-to-point API over threads of one process, with NCCL's semantics where they matter to
// pipeproof. Buffers are host memory; streams are opaque and ignored.
//   - Rendezvous (docs/design.md's `nccl` model): a send completes only together with its receive,
//     the k-th send from p to q with the k-th receive on q from p, whatever their sizes (the
//     smaller size is copied). A call outside a group blocks its thread until it completes, as
//     the rank's in-order stream would; a group posts its calls at ncclGroupEnd, in the order they
//     were made, and ncclGroupEnd returns once all of them have completed.
//   - ncclCommInitRank waits for every rank of the id (inside a group: at ncclGroupEnd);
//     ncclCommInitAll makes all ranks at once; ncclCommSplit is collective over the parent.
// Switches for tests (environment):
//   PIPEPROOF_STANDIN_EAGER_BYTES=N  sends of at most N bytes complete once posted, as NCCL's
//                                    buffered small messages may (a cross then does not hang)
//   PIPEPROOF_STANDIN_LOG=FILE       one line per posted call: "rank R post send|recv peer P count
//   C" PIPEPROOF_STANDIN_NULL=1         every call returns at once (to time the interposer alone)

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "usercode/nccl_api.h"

#define STANDIN_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

size_t TypeSize(ncclDataType_t t) {
  switch (t) {
    case ncclInt8:
    case ncclUint8:
    case ncclFloat8e4m3:
    case ncclFloat8e5m2:
      return 1;
    case ncclFloat16:
    case ncclBfloat16:
      return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
      return 4;
    default:
      return 8;
  }
}

size_t EnvSize(const char* name, size_t fallback) {
  const char* v = getenv(name);
  return v && *v ? strtoull(v, nullptr, 10) : fallback;
}

const bool g_null = EnvSize("PIPEPROOF_STANDIN_NULL", 0) != 0;
const size_t g_eager_bytes = EnvSize("PIPEPROOF_STANDIN_EAGER_BYTES", 0);

// One posted send or receive.
struct Transfer {
  bool send = false;
  const void* send_buffer = nullptr;
  void* recv_buffer = nullptr;
  size_t bytes = 0;
  bool done = false;
  bool eager_copy = false;  // an eager send's payload, copied when posted
  std::vector<char> copy;
};

struct SplitRound {
  int arrived = 0;
  std::vector<std::tuple<int, int, int>> members;  // (color, key, rank)
  std::map<int, struct Clique*> children;          // color -> clique
};

struct Clique {
  int nranks = 0;
  std::mutex mutex;
  std::condition_variable changed;
  bool aborted = false;
  // Per ordered pair (from, to): posted sends and receives not yet matched, in posting order.
  std::map<std::pair<int, int>, std::deque<std::shared_ptr<Transfer>>> sends, recvs;
  std::map<uint64_t, SplitRound> splits;  // by the parent's split counter
};

}  // namespace

struct ncclComm {
  Clique* clique;
  int rank;
  uint64_t splits = 0;
};

namespace {

struct Registry {
  std::mutex mutex;
  std::condition_variable changed;
  struct Pending {
    Clique* clique = nullptr;
    int joined = 0;
  };
  std::map<std::vector<char>, Pending> by_id;
  uint64_t next_id = 0;
};
Registry& registry() {
  static Registry* r = new Registry;
  return *r;
}

std::mutex g_log_mutex;
FILE* LogFile() {
  static FILE* f = [] {
    const char* path = getenv("PIPEPROOF_STANDIN_LOG");
    return path && *path ? fopen(path, "a") : nullptr;
  }();
  return f;
}

void Log(const ncclComm& comm, bool send, int peer, size_t count) {
  FILE* f = LogFile();
  if (!f) return;
  std::lock_guard lock(g_log_mutex);
  fprintf(f, "rank %d post %s peer %d count %zu\n", comm.rank, send ? "send" : "recv", peer, count);
  fflush(f);
}

// Matches what can be matched on the pair (from, to). Under the clique's mutex.
void Match(Clique& c, int from, int to) {
  auto& sends = c.sends[{from, to}];
  auto& recvs = c.recvs[{from, to}];
  while (!sends.empty() && !recvs.empty()) {
    auto s = sends.front();
    auto r = recvs.front();
    sends.pop_front();
    recvs.pop_front();
    const void* from_buffer = s->eager_copy ? s->copy.data() : s->send_buffer;
    const size_t n = std::min(s->bytes, r->bytes);
    if (n) std::memcpy(r->recv_buffer, from_buffer, n);
    s->done = r->done = true;
  }
}

struct Call {
  ncclComm* comm;
  bool send;
  const void* send_buffer;
  void* recv_buffer;
  size_t count;
  ncclDataType_t dtype;
  int peer;
};

std::shared_ptr<Transfer> PostOne(const Call& call) {
  auto t = std::make_shared<Transfer>();
  t->send = call.send;
  t->send_buffer = call.send_buffer;
  t->recv_buffer = call.recv_buffer;
  t->bytes = call.count * TypeSize(call.dtype);
  Clique& c = *call.comm->clique;
  Log(*call.comm, call.send, call.peer, call.count);
  if (call.send && t->bytes <= g_eager_bytes) {
    t->eager_copy = true;
    t->copy.assign(static_cast<const char*>(call.send_buffer),
                   static_cast<const char*>(call.send_buffer) + t->bytes);
  }
  const int from = call.send ? call.comm->rank : call.peer;
  const int to = call.send ? call.peer : call.comm->rank;
  (call.send ? c.sends : c.recvs)[{from, to}].push_back(t);
  Match(c, from, to);
  if (t->eager_copy) t->done = true;
  return t;
}

// Posts `calls` (in order) and waits until every one has completed.
ncclResult_t PostAndWait(const std::vector<Call>& calls) {
  if (calls.empty()) return ncclSuccess;
  std::vector<std::pair<Clique*, std::shared_ptr<Transfer>>> posted;
  for (const Call& call : calls) {
    Clique& c = *call.comm->clique;
    std::lock_guard lock(c.mutex);
    posted.push_back({&c, PostOne(call)});
    c.changed.notify_all();
  }
  for (auto& [clique, transfer] : posted) {
    std::unique_lock lock(clique->mutex);
    clique->changed.wait(lock, [&] { return transfer->done || clique->aborted; });
    if (clique->aborted && !transfer->done) return ncclRemoteError;
  }
  return ncclSuccess;
}

struct ThreadGroup {
  int depth = 0;
  std::vector<Call> calls;
  std::vector<std::pair<ncclComm*, std::vector<char>>> inits;  // ncclCommInitRank made in the group
};
thread_local ThreadGroup t_group;

ncclResult_t Enqueue(const Call& call) {
  if (g_null) return ncclSuccess;
  if (!call.comm || call.peer < 0 || call.peer >= call.comm->clique->nranks)
    return ncclInvalidArgument;
  if (t_group.depth > 0) {
    t_group.calls.push_back(call);
    return ncclSuccess;
  }
  return PostAndWait({call});
}

// Waits until all ranks of `id` have joined; returns the clique.
Clique* Join(const std::vector<char>& key, int nranks, bool wait) {
  Registry& reg = registry();
  std::unique_lock lock(reg.mutex);
  Registry::Pending& p = reg.by_id[key];
  if (!p.clique) {
    p.clique = new Clique;
    p.clique->nranks = nranks;
  }
  Clique* clique = p.clique;
  ++p.joined;
  reg.changed.notify_all();
  if (wait) reg.changed.wait(lock, [&] { return reg.by_id[key].joined >= nranks; });
  return clique;
}

void WaitJoined(const std::vector<char>& key, int nranks) {
  Registry& reg = registry();
  std::unique_lock lock(reg.mutex);
  reg.changed.wait(lock, [&] { return reg.by_id[key].joined >= nranks; });
}

}  // namespace

STANDIN_EXPORT ncclResult_t ncclGetVersion(int* version) {
  *version = 22809;
  return ncclSuccess;
}

STANDIN_EXPORT const char* ncclGetErrorString(ncclResult_t result) {
  return result == ncclSuccess ? "no error" : "stand-in NCCL error";
}

STANDIN_EXPORT ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  std::memset(id, 0, sizeof *id);
  uint64_t n;
  {
    std::lock_guard lock(registry().mutex);
    n = ++registry().next_id;
  }
  std::snprintf(id->internal, sizeof id->internal, "standin-%d-%llu", int(getpid()),
                static_cast<unsigned long long>(n));
  return ncclSuccess;
}

STANDIN_EXPORT ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id,
                                             int rank) {
  if (!comm || nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
  std::vector<char> key(id.internal, id.internal + sizeof id.internal);
  const bool in_group = t_group.depth > 0;
  Clique* clique = Join(key, nranks, /*wait=*/!in_group);
  *comm = new ncclComm{clique, rank};
  if (in_group) t_group.inits.push_back({*comm, key});
  return ncclSuccess;
}

STANDIN_EXPORT ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks, ncclUniqueId id,
                                                   int rank, ncclConfig_t*) {
  return ncclCommInitRank(comm, nranks, id, rank);
}

STANDIN_EXPORT ncclResult_t ncclCommInitAll(ncclComm_t* comms, int ndev, const int*) {
  if (!comms || ndev < 1) return ncclInvalidArgument;
  auto* clique = new Clique;
  clique->nranks = ndev;
  for (int i = 0; i < ndev; ++i) comms[i] = new ncclComm{clique, i};
  return ncclSuccess;
}

STANDIN_EXPORT ncclResult_t ncclCommSplit(ncclComm_t comm, int color, int key, ncclComm_t* newcomm,
                                          ncclConfig_t*) {
  if (!comm || !newcomm) return ncclInvalidArgument;
  Clique& parent = *comm->clique;
  const uint64_t round_id = comm->splits++;
  std::unique_lock lock(parent.mutex);
  SplitRound& round = parent.splits[round_id];
  round.members.emplace_back(color, key, comm->rank);
  ++round.arrived;
  if (round.arrived == parent.nranks) {
    std::map<int, std::vector<std::pair<int, int>>> by_color;  // color -> (key, rank)
    for (auto [c, k, r] : round.members) {
      if (c != NCCL_SPLIT_NOCOLOR) by_color[c].push_back({k, r});
    }
    for (auto& [c, members] : by_color) {
      auto* child = new Clique;
      child->nranks = static_cast<int>(members.size());
      round.children[c] = child;
    }
    parent.changed.notify_all();
  }
  parent.changed.wait(lock, [&] { return round.arrived == parent.nranks; });
  if (color == NCCL_SPLIT_NOCOLOR) {
    *newcomm = nullptr;
    return ncclSuccess;
  }
  std::vector<std::pair<int, int>> members;
  for (auto [c, k, r] : round.members) {
    if (c == color) members.push_back({k, r});
  }
  std::sort(members.begin(), members.end());
  const int rank = static_cast<int>(
      std::find(members.begin(), members.end(), std::pair{key, comm->rank}) - members.begin());
  *newcomm = new ncclComm{round.children[color], rank};
  return ncclSuccess;
}

STANDIN_EXPORT ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  delete comm;  // cliques stay: other ranks may still be using them
  return ncclSuccess;
}

STANDIN_EXPORT ncclResult_t ncclCommAbort(ncclComm_t comm) {
  if (!comm) return ncclSuccess;
  {
    std::lock_guard lock(comm->clique->mutex);
    comm->clique->aborted = true;
    comm->clique->changed.notify_all();
  }
  delete comm;
  return ncclSuccess;
}

STANDIN_EXPORT ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) {
  if (!comm || !count) return ncclInvalidArgument;
  *count = comm->clique->nranks;
  return ncclSuccess;
}

STANDIN_EXPORT ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) {
  if (!comm || !rank) return ncclInvalidArgument;
  *rank = comm->rank;
  return ncclSuccess;
}

STANDIN_EXPORT ncclResult_t ncclCommCuDevice(const ncclComm_t comm, int* device) {
  if (!comm || !device) return ncclInvalidArgument;
  *device = comm->rank;
  return ncclSuccess;
}

STANDIN_EXPORT ncclResult_t ncclSend(const void* sendbuff, size_t count, ncclDataType_t datatype,
                                     int peer, ncclComm_t comm, cudaStream_t) {
  return Enqueue({comm, true, sendbuff, nullptr, count, datatype, peer});
}

STANDIN_EXPORT ncclResult_t ncclRecv(void* recvbuff, size_t count, ncclDataType_t datatype,
                                     int peer, ncclComm_t comm, cudaStream_t) {
  return Enqueue({comm, false, nullptr, recvbuff, count, datatype, peer});
}

STANDIN_EXPORT ncclResult_t ncclGroupStart() {
  ++t_group.depth;
  return ncclSuccess;
}

STANDIN_EXPORT ncclResult_t ncclGroupEnd() {
  if (t_group.depth <= 0) return ncclInvalidUsage;
  if (--t_group.depth > 0) return ncclSuccess;
  for (auto& [comm, key] : t_group.inits) WaitJoined(key, comm->clique->nranks);
  t_group.inits.clear();
  std::vector<Call> calls;
  calls.swap(t_group.calls);
  return PostAndWait(calls);
}
