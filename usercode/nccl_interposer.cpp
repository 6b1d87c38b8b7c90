// libpipeproof_nccl.so: an LD_PRELOAD interposer for NCCL's point-to-point and group calls. It
// forwards every call to the real NCCL, follows a seeded fault plan (exec/fault_plan.h, the plans
// `pipeproof run` draws and saves), and records every ncclSend/ncclRecv of each rank in a trace
// (usercode/nccl_trace.h) written at exit, when a rank destroys its last communicator, and on a fatal
// signal. `pipeproof inject` sets it up; it reads:
//   PIPEPROOF_NCCL_TRACE_DIR  where traces go (none are written without it)
//   PIPEPROOF_NCCL_PLAN       a fault plan (JSON); without it, calls are only traced
//   PIPEPROOF_NCCL_DELAYS     auto (default: spin kernels on the call's stream where CUDA works,
//                             host sleeps elsewhere), host, or gpu
//   PIPEPROOF_NCCL_LIBRARY    the real libnccl, when it is not found by the dynamic linker
//   PIPEPROOF_NCCL_QUIET      1: no notices on stderr
//   PIPEPROOF_RANK, else RANK, OMPI_COMM_WORLD_RANK, PMI_RANK, SLURM_PROCID: this process's rank
//
// Ranks. A fault plan and a trace are per rank. A process's rank is the first of the variables
// above that is set; else the rank it has in the first communicator it creates. A process that
// holds several ranks of one communicator (ncclCommInitAll, or threads each calling
// ncclCommInitRank with one id) gets one rank per communicator member, its rank in that
// communicator; communicators split off a communicator belong to the parent's rank.
//
// Counters, as the fault plan names places: a rank's k-th ncclSend/ncclRecv is its k-th
// communication op (post_delay_us[k] delays it; kill {rank, action k} stops the rank dead before
// it: the NCCL calls are the only actions of a program the interposer sees), and its units are
// numbered in order: its part of one outermost ncclGroupStart/End, or one
// call outside any group (unit_orders[...].unit). A unit whose posting order the plan sets is
// held back until ncclGroupEnd and then handed to NCCL in that order, each (communicator, peer,
// direction) keeping its calls in program order whatever the plan says (reordering them would
// change which message meets which receive: that is the swap negative control, not a shuffle).
// Delays are spin kernels queued on the call's stream before it (so the delay lands at GPU time)
// where CUDA is usable, else host sleeps before the call. Faults the interposer cannot place in a
// program it did not write (delays before delivery or compute, stragglers, poisoning, corruption)
// are ignored, with a notice.
//
// Cost when no fault is planned: per call a lookup of the communicator (cached per thread), one
// uncontended lock, one 64-byte record and two clock reads.

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "exec/fault_plan.h"
#include "usercode/nccl_api.h"
#include "usercode/nccl_gpu.h"
#include "usercode/nccl_trace.h"
#include "schedule/errors.h"  // InputError, kMaxRanks

#define PIPEPROOF_EXPORT extern "C" __attribute__((visibility("default")))

namespace pipeproof::interposer {
namespace {

// ---------------------------------------------------------------- clocks and messages

uint64_t ClockNs(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

// Time zero of every trace of this process, taken when the library is loaded.
const uint64_t g_epoch_monotonic = ClockNs(CLOCK_MONOTONIC);
const uint64_t g_epoch_realtime = ClockNs(CLOCK_REALTIME);

uint64_t Now() { return ClockNs(CLOCK_MONOTONIC) - g_epoch_monotonic; }

bool Quiet() {
  static const bool quiet = [] {
    const char* q = getenv("PIPEPROOF_NCCL_QUIET");
    return q && *q && std::strcmp(q, "0") != 0;
  }();
  return quiet;
}

__attribute__((format(printf, 1, 2))) void Say(const char* format, ...) {
  if (Quiet()) return;
  char line[1024];
  va_list args;
  va_start(args, format);
  vsnprintf(line, sizeof line, format, args);
  va_end(args);
  fprintf(stderr, "pipeproof-nccl: %s\n", line);
}

// ---------------------------------------------------------------- the real NCCL

void* OpenRealLibrary() {
  if (const char* path = getenv("PIPEPROOF_NCCL_LIBRARY"); path && *path) {
    void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) Say("cannot open PIPEPROOF_NCCL_LIBRARY=%s: %s", path, dlerror());
    return lib;
  }
  // Loaded, but outside the global scope (an extension module opened with RTLD_LOCAL):
  // RTLD_NEXT does not see it, its soname does.
  for (const char* name : {"libnccl.so.2", "libnccl.so"}) {
    if (void* lib = dlopen(name, RTLD_NOW | RTLD_NOLOAD)) return lib;
  }
  return nullptr;
}

// The real `name`, never this library's own `self` (null for calls it does not wrap).
void* ResolveReal(const char* name, void* self) {
  static void* const explicit_library =
      getenv("PIPEPROOF_NCCL_LIBRARY") ? OpenRealLibrary() : nullptr;
  if (explicit_library) {
    void* fn = dlsym(explicit_library, name);
    if (fn && fn != self) return fn;
  }
  if (void* fn = dlsym(RTLD_NEXT, name); fn && fn != self) return fn;
  if (void* lib = OpenRealLibrary()) {
    if (void* fn = dlsym(lib, name); fn && fn != self) return fn;
  }
  Say("cannot find the real %s (is libnccl loaded? set PIPEPROOF_NCCL_LIBRARY)", name);
  return nullptr;
}

#define PIPEPROOF_REAL(name)                                                          \
  static const auto real_##name = reinterpret_cast<decltype(&::name)>(                \
      ::pipeproof::interposer::ResolveReal(#name, reinterpret_cast<void*>(&::name))); \
  if (!real_##name) return ncclSystemError

// ---------------------------------------------------------------- records

// Append-only storage in fixed chunks that never move, so that a signal handler can write out
// what is there while other threads go on appending. Appends happen under the owner's lock.
template <typename T, size_t kChunkRecords>
class RecordLog {
 public:
  static constexpr size_t kMaxChunks = 4096;

  // A zeroed slot for the next record, or null when the log is full. Publish() makes it visible.
  T* Prepare() {
    const uint64_t n = size_.load(std::memory_order_relaxed);
    const uint64_t chunk = n / kChunkRecords;
    if (chunk >= kMaxChunks) return nullptr;
    T* c = chunks_[chunk].load(std::memory_order_relaxed);
    if (!c) {
      // Zeroed pages from the kernel: the records are plain data, and nothing needs a memset.
      c = static_cast<T*>(calloc(kChunkRecords, sizeof(T)));
      if (!c) return nullptr;
      chunks_[chunk].store(c, std::memory_order_release);
    }
    return &c[n % kChunkRecords];
  }
  uint64_t Publish() { return size_.fetch_add(1, std::memory_order_release); }

  uint64_t size() const { return size_.load(std::memory_order_acquire); }
  T& At(uint64_t i) {
    return chunks_[i / kChunkRecords].load(std::memory_order_acquire)[i % kChunkRecords];
  }

  // Calls `fn(const T*, count)` for the first `n` records, chunk by chunk.
  template <typename Fn>
  void ForEachChunk(uint64_t n, Fn fn) const {
    for (uint64_t at = 0; at < n; at += kChunkRecords) {
      fn(chunks_[at / kChunkRecords].load(std::memory_order_acquire),
         std::min<uint64_t>(kChunkRecords, n - at));
    }
  }

 private:
  std::atomic<T*> chunks_[kMaxChunks] = {};
  std::atomic<uint64_t> size_{0};
};

constexpr uint64_t kNoRecord = ~uint64_t{0};

// A record's fields are set in steps (posted, then completed); a trace written between two steps
// by a signal handler must still read. These put every record in a consistent state.
void Normalize(TraceCall& c) {
  if (!(c.flags & kCallPosted) || c.posted_as == kNotPosted) {
    c.flags &= ~(kCallPosted | kCallCompleted);
    c.posted_as = kNotPosted;
  }
  if (!(c.flags & kCallCompleted) || c.t_complete < c.t_call) {
    c.flags &= ~kCallCompleted;
    c.t_complete = 0;
  }
  if (!(c.flags & kCallError) || c.result == 0) {
    c.flags &= ~kCallError;
    c.result = 0;
  }
}
void Normalize(TraceComm& c) {
  if (c.rank < 0 || c.nranks < 1 || c.rank >= c.nranks) c.rank = c.nranks = -1;
}

bool WriteAll(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Writes records through a small buffer, normalized. Async-signal-safe.
template <typename T, typename Log>
bool WriteRecords(int fd, const Log& log, uint64_t n) {
  bool ok = true;
  log.ForEachChunk(n, [&](const T* records, uint64_t count) {
    T buffer[32];
    for (uint64_t i = 0; ok && i < count; i += 32) {
      const uint64_t m = std::min<uint64_t>(32, count - i);
      std::memcpy(static_cast<void*>(buffer), records + i, m * sizeof(T));
      for (uint64_t k = 0; k < m; ++k) Normalize(buffer[k]);
      ok = WriteAll(fd, buffer, m * sizeof(T));
    }
  });
  return ok;
}

// ---------------------------------------------------------------- ranks

// Calls whose completion a CUDA event will tell.
struct PendingCompletion {
  Gpu::Event event;
  std::vector<uint64_t> calls;
};

struct RankState {
  int rank = 0;
  std::mutex mutex;  // appends, counters and record updates
  RecordLog<TraceCall, 16384> calls;
  RecordLog<TraceComm, 16> comms;
  uint64_t next_op = 0;  // the k of the next ncclSend/ncclRecv (counts dropped calls too)
  uint64_t next_unit = 0;
  std::atomic<uint64_t> dropped{0};
  std::atomic<uint32_t> flags{0};  // TraceFlag bits learned while running
  std::atomic<bool> stopped{false};
  int live_comms = 0;
  // The plan's faults for this rank.
  const RankFaults* faults = nullptr;
  std::unordered_map<uint64_t, const std::vector<int>*> unit_orders;
  std::optional<uint64_t> kill_before;
  std::deque<PendingCompletion> pending;
  TraceHeader header{};
  char path[4096] = {};
};

// Writes one rank's trace. Async-signal-safe: only reads memory and calls open/write/close.
void WriteRankTrace(RankState& r, int signal) {
  if (!r.path[0]) return;
  TraceHeader h = r.header;
  h.comm_count = static_cast<uint32_t>(r.comms.size());
  h.call_count = r.calls.size();
  h.flags = r.flags.load();
  h.dropped_calls = r.dropped.load();
  if (h.dropped_calls) h.flags |= kTraceCallsDropped;
  if (signal) h.flags |= kTraceWrittenOnSignal;
  h.end_signal = signal;
  const int fd = open(r.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  if (WriteAll(fd, &h, sizeof h) && WriteRecords<TraceComm>(fd, r.comms, h.comm_count)) {
    WriteRecords<TraceCall>(fd, r.calls, h.call_count);
  }
  close(fd);
}

// ---------------------------------------------------------------- communicators

struct CommState {
  ncclComm_t handle = nullptr;
  RankState* owner = nullptr;
  uint64_t index = 0;  // in the owner's communicator log
  uint64_t id = 0;
  int rank = -1;
  int nranks = -1;
  uint64_t children = 0;  // splits and shrinks made from it so far
};

// FNV-1a, then a final mix: ids of communicators, the same in every member process.
class IdHash {
 public:
  IdHash& Add(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) h_ = (h_ ^ p[i]) * 0x100000001b3ull;
    return *this;
  }
  template <typename T>
  IdHash& Add(const T& value) {
    return Add(&value, sizeof value);
  }
  uint64_t Get() const {
    uint64_t x = h_ ^ (h_ >> 33);
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x ? x : 1;  // 0 means "none" in a trace
  }

 private:
  uint64_t h_ = 0xcbf29ce484222325ull;
};

std::optional<int> RankFromEnvironment() {
  for (const char* name :
       {"PIPEPROOF_RANK", "RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    const char* v = getenv(name);
    if (!v || !*v) continue;
    char* end = nullptr;
    const long r = strtol(v, &end, 10);
    if (*end == '\0' && r >= 0 && r < kMaxRanks) return static_cast<int>(r);
    Say("ignoring %s=%s: not a rank in 0..%d", name, v, kMaxRanks - 1);
  }
  return std::nullopt;
}

// ---------------------------------------------------------------- the process

enum class DelayMode { kAuto, kHost, kGpu };

void InstallSignalHandlers();
void WriteTracesAtExit();

class Process {
 public:
  static Process& Get() {
    static Process* p = new Process;  // never destroyed: signal handlers and exit hooks use it
    return *p;
  }

  FaultPlan plan;
  bool have_plan = false;
  Gpu* gpu = nullptr;
  std::string trace_dir;
  std::atomic<bool> disabled{false};  // a forked child writes nothing
  std::array<std::atomic<RankState*>, kMaxRanks> ranks{};

  // Registers a communicator this process made; returns its state.
  // The rank that a communicator being made belongs to, set up before the real init runs: init
  // is collective, so every rank of a process then has its state (and later its trace) before
  // any rank can make a call, crash, or be killed.
  RankState* RankOfRoot(uint64_t id, CommOrigin origin, int rank) {
    int world;
    {
      std::lock_guard lock(mutex_);
      world = WorldRankOfRoot(id, origin, rank);
    }
    return RankFor(world);
  }

  CommState* RegisterRoot(ncclComm_t handle, RankState* owner, uint64_t id, CommOrigin origin,
                          int rank, int nranks) {
    return Register(handle, owner, id, 0, origin, rank, nranks);
  }

  CommState* RegisterChild(ncclComm_t handle, CommState& parent, uint64_t id, CommOrigin origin) {
    int rank = -1, nranks = -1;
    QueryRanks(handle, &rank, &nranks);
    return Register(handle, parent.owner, id, parent.id, origin, rank, nranks);
  }

  // The state of `handle`, adopting a communicator made before tracing began. Cached per thread.
  CommState* Lookup(ncclComm_t handle) {
    thread_local ncclComm_t cached_handle = nullptr;
    thread_local uint64_t cached_generation = 0;
    thread_local CommState* cached = nullptr;
    const uint64_t generation = generation_.load(std::memory_order_acquire);
    if (cached && cached_handle == handle && cached_generation == generation) return cached;
    CommState* c = nullptr;
    {
      std::lock_guard lock(mutex_);
      if (auto it = comms_.find(handle); it != comms_.end()) c = it->second;
    }
    if (!c) c = Adopt(handle);
    cached_handle = handle;
    cached_generation = generation_.load(std::memory_order_acquire);
    cached = c;
    return c;
  }

  // Forgets `handle` (destroyed or aborted); returns its state, or null if unknown.
  CommState* Forget(ncclComm_t handle) {
    std::lock_guard lock(mutex_);
    auto it = comms_.find(handle);
    if (it == comms_.end()) return nullptr;
    CommState* c = it->second;
    comms_.erase(it);
    generation_.fetch_add(1, std::memory_order_acq_rel);
    return c;
  }

  // Rank and size of a communicator whose init may still be in progress; -1 while unknown.
  static void QueryRanks(ncclComm_t handle, int* rank, int* nranks) {
    static const auto user_rank =
        reinterpret_cast<decltype(&::ncclCommUserRank)>(ResolveReal("ncclCommUserRank", nullptr));
    static const auto count =
        reinterpret_cast<decltype(&::ncclCommCount)>(ResolveReal("ncclCommCount", nullptr));
    int r = -1, n = -1;
    if (user_rank && count && user_rank(handle, &r) == ncclSuccess &&
        count(handle, &n) == ncclSuccess && n >= 1 && r >= 0 && r < n) {
      *rank = r;
      *nranks = n;
    }
  }

  uint64_t NextInitAllId() {
    std::lock_guard lock(mutex_);
    return IdHash().Add(uint32_t(getpid())).Add(g_epoch_realtime).Add(++init_all_count_).Get();
  }

  void DrainCompletions(RankState& r, bool wait);

 private:
  Process() {
    if (const char* dir = getenv("PIPEPROOF_NCCL_TRACE_DIR"); dir && *dir) {
      trace_dir = dir;
      mkdir(dir, 0755);  // pipeproof inject made it; a bare LD_PRELOAD may not have
    }
    if (const char* path = getenv("PIPEPROOF_NCCL_PLAN"); path && *path) {
      try {
        plan = ReadFaultPlan(path);
        have_plan = true;
      } catch (const std::exception& e) {
        fprintf(stderr, "pipeproof-nccl: cannot use the fault plan: %s\n", e.what());
        std::_Exit(2);  // running without the faults asked for would be a silent lie
      }
      AnnounceIgnoredFaults();
    }
    DelayMode mode = DelayMode::kAuto;
    if (const char* m = getenv("PIPEPROOF_NCCL_DELAYS"); m && *m) {
      if (std::strcmp(m, "host") == 0)
        mode = DelayMode::kHost;
      else if (std::strcmp(m, "gpu") == 0)
        mode = DelayMode::kGpu;
    }
    if (mode != DelayMode::kHost) gpu = Gpu::Get(&Now);
    if (mode == DelayMode::kGpu && !gpu)
      Say("PIPEPROOF_NCCL_DELAYS=gpu, but CUDA is not usable here: host sleeps and host timestamps "
          "instead");
    env_rank_ = RankFromEnvironment();
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    host_ = host;
    pthread_atfork(nullptr, nullptr, [] { Process::Get().disabled = true; });
    InstallSignalHandlers();
    std::atexit(WriteTracesAtExit);
  }

  void AnnounceIgnoredFaults() const {
    std::vector<std::string> ignored;
    bool deliver = false, compute = false, straggler = false;
    for (const RankFaults& f : plan.ranks) {
      deliver |= std::any_of(f.deliver_delay_us.begin(), f.deliver_delay_us.end(),
                             [](uint32_t d) { return d; });
      compute |= std::any_of(f.compute_delay_us.begin(), f.compute_delay_us.end(),
                             [](uint32_t d) { return d; });
      straggler |= f.straggler != 1;
    }
    if (deliver) ignored.push_back("delays before delivery");
    if (compute) ignored.push_back("delays before compute");
    if (straggler) ignored.push_back("stragglers");
    if (plan.poison) ignored.push_back("poisoning");
    if (plan.corrupt) ignored.push_back("corruption");
    if (ignored.empty()) return;
    std::string list;
    for (const auto& s : ignored) list += (list.empty() ? "" : ", ") + s;
    Say("the plan's %s cannot be placed in a program pipeproof did not write: ignored",
        list.c_str());
  }

  // Under mutex_.
  int WorldRankOfRoot(uint64_t id, CommOrigin origin, int comm_rank) {
    if (origin == CommOrigin::kInitAll) return comm_rank;
    const bool second_member_here = !root_ids_.insert(id).second;
    if (second_member_here) several_ranks_here_ = true;
    if (several_ranks_here_) return comm_rank;
    if (env_rank_) return *env_rank_;
    if (!process_rank_) process_rank_ = comm_rank;
    return *process_rank_;
  }

  RankState* RankFor(int world) {
    world = std::clamp(world, 0, kMaxRanks - 1);
    if (RankState* r = ranks[world].load(std::memory_order_acquire)) return r;
    std::lock_guard lock(mutex_);
    if (RankState* r = ranks[world].load(std::memory_order_acquire)) return r;
    auto* r = new RankState;
    r->rank = world;
    r->header = MakeTraceHeader(world, static_cast<uint32_t>(getpid()), g_epoch_realtime, host_);
    if (!trace_dir.empty()) {
      const std::string path =
          trace_dir + "/" + TraceFileName(world, static_cast<uint32_t>(getpid()));
      std::snprintf(r->path, sizeof r->path, "%s", path.c_str());
    }
    r->faults = &plan.Rank(world);
    for (const auto& u : r->faults->unit_orders)
      r->unit_orders[static_cast<uint64_t>(u.unit)] = &u.order;
    if (plan.kill && plan.kill->rank == world)
      r->kill_before = static_cast<uint64_t>(plan.kill->action);
    if (gpu) r->flags |= kTraceGpuCompletion;
    ranks[world].store(r, std::memory_order_release);
    Announce(*r);
    return r;
  }

  void Announce(const RankState& r) const {
    std::string faults = "no faults";
    if (have_plan) {
      const RankFaults& f = *r.faults;
      const auto delays = std::count_if(f.post_delay_us.begin(), f.post_delay_us.end(),
                                        [](uint32_t d) { return d; });
      faults = std::to_string(delays) + " delayed calls, " + std::to_string(f.unit_orders.size()) +
               " reordered groups";
      if (r.kill_before) faults += ", stops dead before call #" + std::to_string(*r.kill_before);
      faults += gpu ? " (delays on the GPU)" : " (delays on the host)";
    }
    Say("rank %d (pid %d): %s; trace: %s", r.rank, int(getpid()), faults.c_str(),
        r.path[0] ? r.path : "not written (no PIPEPROOF_NCCL_TRACE_DIR)");
  }

  CommState* Register(ncclComm_t handle, RankState* owner, uint64_t id, uint64_t parent_id,
                      CommOrigin origin, int rank, int nranks) {
    auto* c = new CommState{handle, owner, 0, id, rank, nranks, 0};
    {
      std::lock_guard lock(owner->mutex);
      TraceComm* slot = owner->comms.Prepare();
      if (slot) {
        slot->id = id;
        slot->parent_id = parent_id;
        slot->handle = reinterpret_cast<uint64_t>(handle);
        slot->nranks = nranks;
        slot->rank = rank;
        slot->origin = static_cast<uint8_t>(origin);
        slot->device = DeviceOf(handle);
        c->index = owner->comms.Publish();
      } else {
        c->index = kNoRecord;
      }
      ++owner->live_comms;
    }
    {
      std::lock_guard lock(mutex_);
      comms_[handle] = c;
      generation_.fetch_add(1, std::memory_order_acq_rel);
    }
    InstallSignalHandlers();  // again: the program may have put its own in place since
    return c;
  }

  int DeviceOf(ncclComm_t handle) const {
    if (!gpu) return -1;
    static const auto cu_device =
        reinterpret_cast<decltype(&::ncclCommCuDevice)>(ResolveReal("ncclCommCuDevice", nullptr));
    int device = -1;
    if (!cu_device || cu_device(handle, &device) != ncclSuccess) return -1;
    return device;
  }

  CommState* Adopt(ncclComm_t handle) {
    int rank = -1, nranks = -1;
    QueryRanks(handle, &rank, &nranks);
    const uint64_t id = IdHash().Add(uint32_t(getpid())).Add(handle).Get();
    int world;
    {
      std::lock_guard lock(mutex_);
      world = env_rank_ ? *env_rank_ : process_rank_ ? *process_rank_ : std::max(rank, 0);
    }
    Say("communicator %p was made before tracing began; its peers cannot be matched across "
        "processes",
        static_cast<void*>(handle));
    return Register(handle, RankFor(world), id, 0, CommOrigin::kUnknown, rank, nranks);
  }

  std::mutex mutex_;
  std::unordered_map<ncclComm_t, CommState*> comms_;
  std::atomic<uint64_t> generation_{1};
  std::unordered_set<uint64_t> root_ids_;
  bool several_ranks_here_ = false;
  std::optional<int> env_rank_;
  std::optional<int> process_rank_;
  uint64_t init_all_count_ = 0;
  std::string host_;
};

void SetCompleted(RankState& r, uint64_t call, uint64_t t) {
  if (call == kNoRecord) return;
  TraceCall& c = r.calls.At(call);
  if (!(c.flags & kCallPosted) || (c.flags & kCallError)) return;
  c.t_complete = std::max(t, c.t_call);
  c.flags |= kCallCompleted;
}

// Under r.mutex. Takes the completions CUDA events have seen; with `wait`, waits up to half a
// second for the rest (at exit).
void Process::DrainCompletions(RankState& r, bool wait) {
  if (!gpu) return;
  const uint64_t give_up = Now() + 500'000'000;
  while (!r.pending.empty()) {
    PendingCompletion& p = r.pending.front();
    uint64_t t = 0;
    const Gpu::Poll poll = gpu->Query(p.event, &t);
    if (poll == Gpu::Poll::kPending) {
      if (!wait || Now() > give_up) return;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      continue;
    }
    if (poll == Gpu::Poll::kDone) {
      for (uint64_t call : p.calls) SetCompleted(r, call, t);
    }
    gpu->Release(p.event);
    r.pending.pop_front();
  }
}

// ---------------------------------------------------------------- signals and exit

std::atomic<bool> g_dumping{false};
constexpr int kFatalSignals[] = {SIGTERM, SIGINT, SIGABRT, SIGSEGV, SIGBUS};
struct sigaction g_previous[65];

void WriteEveryTrace(int signal) {
  Process& p = Process::Get();
  if (p.disabled) return;
  for (auto& slot : p.ranks) {
    if (RankState* r = slot.load(std::memory_order_acquire)) WriteRankTrace(*r, signal);
  }
}

// Passes the signal on as if this handler had never been there.
void Chain(int sig, siginfo_t* info, void* context) {
  const struct sigaction& prev = g_previous[sig];
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction) prev.sa_sigaction(sig, info, context);
    return;
  }
  if (prev.sa_handler == SIG_IGN) return;
  if (prev.sa_handler == SIG_DFL) {
    struct sigaction dfl = {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, nullptr);
    raise(sig);  // delivered, with the default action, once this handler returns
    return;
  }
  prev.sa_handler(sig);
}

void OnFatalSignal(int sig, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  if (!g_dumping.exchange(true)) {
    WriteEveryTrace(sig);
    g_dumping = false;  // the program's own handler may let it go on; it will be written again
  } else {
    // Another thread is writing the traces (a second signal reached another thread, as `timeout`
    // and launchers send them): passing this one on now could end the process mid-write. Wait
    // for it, a few seconds at most.
    const timespec tick = {0, 1'000'000};
    for (int i = 0; i < 5000 && g_dumping; ++i) nanosleep(&tick, nullptr);
  }
  Chain(sig, info, context);
  errno = saved_errno;
}

void InstallSignalHandlers() {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  for (int sig : kFatalSignals) {
    struct sigaction current = {};
    sigaction(sig, nullptr, &current);
    if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == &OnFatalSignal) continue;
    g_previous[sig] = current;
    struct sigaction ours = {};
    ours.sa_sigaction = &OnFatalSignal;
    ours.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&ours.sa_mask);
    for (int other : kFatalSignals) sigaddset(&ours.sa_mask, other);
    sigaction(sig, &ours, nullptr);
  }
}

void WriteTracesAtExit() {
  Process& p = Process::Get();
  if (p.disabled) return;
  for (auto& slot : p.ranks) {
    if (RankState* r = slot.load(std::memory_order_acquire)) {
      std::unique_lock lock(
          r->mutex, std::try_to_lock);  // a thread stuck inside NCCL may hold none, but never wait
      if (lock.owns_lock()) p.DrainCompletions(*r, /*wait=*/true);
    }
  }
  if (!g_dumping.exchange(true)) {
    WriteEveryTrace(0);
    g_dumping = false;
  }
}

// ---------------------------------------------------------------- calls and groups

struct Op {
  CallKind kind;
  const void* send_buffer;
  void* recv_buffer;
  size_t count;
  ncclDataType_t dtype;
  int peer;
  ncclComm_t comm;
  cudaStream_t stream;
  RankState* rank;
  uint64_t call;  // record index, or kNoRecord
  uint32_t delay_us;
  bool held = false;  // held back until ncclGroupEnd for a planned order
};

// A rank's part of the group this thread has open.
struct GroupUnit {
  RankState* rank = nullptr;
  uint64_t unit = 0;
  uint32_t size = 0;
  const std::vector<int>* planned_order = nullptr;  // set: ops are held back until ncclGroupEnd
  std::vector<Op> held;
  std::vector<uint64_t> calls;
  std::vector<cudaStream_t> streams;
};

// This thread's open group. Its units are kept from group to group (only `used` of them are in
// this one), so that a group costs no allocation once the first few have run.
struct ThreadGroup {
  int depth = 0;
  std::vector<GroupUnit> units;
  size_t used = 0;
  std::vector<uint64_t> scratch;

  GroupUnit* begin() { return units.data(); }
  GroupUnit* end() { return units.data() + used; }
  void Reset() { used = 0; }
};
thread_local ThreadGroup t_group;

[[noreturn]] void StopDead(RankState& r, uint64_t call) {
  if (call != kNoRecord) {
    Say("rank %d stops dead before its call #%llu, as the fault plan says; the program will hang",
        r.rank, static_cast<unsigned long long>(call));
  }
  for (;;) pause();
}

void Delay(Process& p, Op& op) {
  if (op.delay_us == 0) return;
  if (p.gpu && !p.gpu->Capturing(op.stream) && p.gpu->Spin(op.stream, op.delay_us)) {
    op.rank->flags |= kTraceGpuDelays;
    if (op.call != kNoRecord) {
      std::lock_guard lock(op.rank->mutex);
      op.rank->calls.At(op.call).flags |= kCallGpuDelay;
    }
    return;
  }
  std::this_thread::sleep_for(std::chrono::microseconds(op.delay_us));
}

void MarkPosted(RankState& r, uint64_t call, uint32_t place, bool shuffled) {
  if (call == kNoRecord) return;
  std::lock_guard lock(r.mutex);
  TraceCall& c = r.calls.At(call);
  c.posted_as = place;  // before the flag: a trace written in between stays consistent
  c.flags |= kCallPosted | (shuffled ? kCallShuffled : 0);
}

void MarkResult(RankState& r, uint64_t call, ncclResult_t result) {
  if (call == kNoRecord || result == ncclSuccess || result == ncclInProgress) return;
  std::lock_guard lock(r.mutex);
  TraceCall& c = r.calls.At(call);
  c.result = static_cast<uint8_t>(result);
  c.flags |= kCallError;
}

ncclResult_t Forward(const Op& op) {
  if (op.kind == CallKind::kSend) {
    PIPEPROOF_REAL(ncclSend);
    return real_ncclSend(op.send_buffer, op.count, op.dtype, op.peer, op.comm, op.stream);
  }
  PIPEPROOF_REAL(ncclRecv);
  return real_ncclRecv(op.recv_buffer, op.count, op.dtype, op.peer, op.comm, op.stream);
}

ncclResult_t Post(Process& p, Op& op, uint32_t place, bool shuffled) {
  if (op.delay_us || shuffled || op.held) {  // else recorded as posted already
    Delay(p, op);
    MarkPosted(*op.rank, op.call, place, shuffled);
  }
  const ncclResult_t result = Forward(op);
  MarkResult(*op.rank, op.call, result);
  return result;
}

// Completion of `calls` (all on `stream`): a CUDA event after them, or the host's time now.
void Complete(Process& p, RankState& r, const std::vector<uint64_t>& calls, cudaStream_t stream) {
  Gpu::Event event;
  const bool on_gpu = p.gpu && !p.gpu->Capturing(stream) && p.gpu->Record(stream, &event);
  std::lock_guard lock(r.mutex);
  if (on_gpu) {
    r.pending.push_back({event, calls});
    return;
  }
  const uint64_t t = Now();
  for (uint64_t call : calls) SetCompleted(r, call, t);
}

GroupUnit& UnitInGroup(RankState& r) {
  for (GroupUnit& u : t_group) {
    if (u.rank == &r) return u;
  }
  if (t_group.used == t_group.units.size()) t_group.units.emplace_back();
  GroupUnit& u = t_group.units[t_group.used++];
  u.rank = &r;
  u.unit = 0;
  u.size = 0;
  u.planned_order = nullptr;
  u.held.clear();
  u.calls.clear();
  u.streams.clear();
  return u;
}

// The order in which to post a held-back unit's ops: the plan's, except that the ops of each
// (communicator, direction, peer) keep their program order: slot k takes the next op of the
// channel that the plan put there.
std::vector<int> PostingOrder(const GroupUnit& u) {
  const int n = static_cast<int>(u.held.size());
  std::vector<int> order(n);
  for (int i = 0; i < n; ++i) order[i] = i;
  if (!u.planned_order || static_cast<int>(u.planned_order->size()) != n) {
    if (u.planned_order) {
      Say("rank %d: the plan orders %zu calls in unit %llu, the program made %d: posted as called",
          u.rank->rank, u.planned_order->size(), static_cast<unsigned long long>(u.unit), n);
    }
    return order;
  }
  using Channel = std::tuple<ncclComm_t, CallKind, int>;
  std::map<Channel, std::deque<int>> channels;
  for (int i = 0; i < n; ++i)
    channels[{u.held[i].comm, u.held[i].kind, u.held[i].peer}].push_back(i);
  for (int k = 0; k < n; ++k) {
    const Op& planned = u.held[(*u.planned_order)[k]];
    auto& queue = channels[{planned.comm, planned.kind, planned.peer}];
    order[k] = queue.front();
    queue.pop_front();
  }
  return order;
}

ncclResult_t Intercept(CallKind kind, const void* send_buffer, void* recv_buffer, size_t count,
                       ncclDataType_t dtype, int peer, ncclComm_t comm, cudaStream_t stream) {
  Process& p = Process::Get();
  CommState* c = p.Lookup(comm);
  RankState& r = *c->owner;
  if (r.stopped) StopDead(r, kNoRecord);
  Op op{kind, send_buffer, recv_buffer, count, dtype, peer, comm, stream, &r, kNoRecord, 0};
  const bool in_group = t_group.depth > 0;
  GroupUnit* group_unit = nullptr;
  uint64_t unit;
  uint32_t index_in_unit = 0;
  bool stop = false;
  {
    std::lock_guard lock(r.mutex);
    p.DrainCompletions(r, /*wait=*/false);
    if (c->nranks < 0) {
      Process::QueryRanks(comm, &c->rank, &c->nranks);
      if (c->nranks > 0 && c->index != kNoRecord) {
        TraceComm& tc = r.comms.At(c->index);
        tc.nranks = c->nranks;
        tc.rank = c->rank;
      }
    }
    const uint64_t k = r.next_op++;
    if (in_group) {
      group_unit = &UnitInGroup(r);
      if (group_unit->size == 0) {
        group_unit->unit = r.next_unit++;
        if (auto it = r.unit_orders.find(group_unit->unit); it != r.unit_orders.end())
          group_unit->planned_order = it->second;
      }
      unit = group_unit->unit;
      index_in_unit = group_unit->size++;
    } else {
      unit = r.next_unit++;
    }
    op.delay_us = k < r.faults->post_delay_us.size() ? r.faults->post_delay_us[k] : 0;
    stop = r.kill_before && *r.kill_before == k;
    if (TraceCall* slot = r.calls.Prepare()) {
      slot->kind = static_cast<uint8_t>(kind);
      slot->dtype = static_cast<uint8_t>(dtype);
      slot->flags = (in_group ? kCallInGroup : 0) | (stop ? kCallStopped : 0);
      slot->comm = c->index == kNoRecord ? 0 : static_cast<uint32_t>(c->index);
      slot->peer = peer;
      slot->delay_us = op.delay_us;
      slot->count = count;
      slot->stream = reinterpret_cast<uint64_t>(stream);
      slot->unit = unit;
      slot->index_in_unit = index_in_unit;
      // Posted at once, as called, unless a delay comes first or the plan holds it back (the
      // common case costs no second visit to the record).
      const bool posted_now =
          op.delay_us == 0 && !(group_unit && group_unit->planned_order) && !stop;
      slot->posted_as = posted_now ? index_in_unit : kNotPosted;
      if (posted_now) slot->flags |= kCallPosted;
      slot->t_call = Now();
      op.call = r.calls.Publish();
    } else {
      r.dropped.fetch_add(1);
    }
    if (stop) r.stopped = true;
  }
  if (stop) StopDead(r, op.call);
  if (!in_group) {
    const ncclResult_t result = Post(p, op, 0, false);
    if (result != ncclSuccess && result != ncclInProgress) return result;
    if (p.gpu) {
      Complete(p, r, {op.call}, stream);
    } else if (op.call != kNoRecord) {
      std::lock_guard lock(r.mutex);
      SetCompleted(r, op.call, Now());
    }
    return result;
  }
  group_unit->calls.push_back(op.call);
  if (std::find(group_unit->streams.begin(), group_unit->streams.end(), stream) ==
      group_unit->streams.end()) {
    group_unit->streams.push_back(stream);
  }
  if (group_unit->planned_order) {
    op.held = true;
    group_unit->held.push_back(op);  // posted at ncclGroupEnd, in the plan's order
    return ncclSuccess;
  }
  return Post(p, op, index_in_unit, false);
}

// Posts the held-back units, in their planned orders. The first error, if any.
ncclResult_t PostHeldUnits(Process& p) {
  ncclResult_t first_error = ncclSuccess;
  for (GroupUnit& u : t_group) {
    if (!u.planned_order) continue;
    const std::vector<int> order = PostingOrder(u);
    const bool shuffled = !std::is_sorted(order.begin(), order.end());
    for (size_t k = 0; k < order.size(); ++k) {
      const ncclResult_t r = Post(p, u.held[order[k]], static_cast<uint32_t>(k), shuffled);
      if (r != ncclSuccess && r != ncclInProgress && first_error == ncclSuccess) first_error = r;
    }
  }
  return first_error;
}

void CompleteGroup(Process& p, ncclResult_t result) {
  for (GroupUnit& u : t_group) {
    if (result != ncclSuccess && result != ncclInProgress) {
      for (uint64_t call : u.calls) MarkResult(*u.rank, call, result);
      continue;
    }
    if (u.streams.size() == 1) {  // the usual group: one stream, every call
      Complete(p, *u.rank, u.calls, u.streams.front());
      continue;
    }
    for (cudaStream_t stream : u.streams) {
      std::vector<uint64_t>& on_stream = t_group.scratch;
      on_stream.clear();
      {
        std::lock_guard lock(u.rank->mutex);
        for (uint64_t call : u.calls) {
          if (call != kNoRecord &&
              reinterpret_cast<cudaStream_t>(u.rank->calls.At(call).stream) == stream)
            on_stream.push_back(call);
        }
      }
      Complete(p, *u.rank, on_stream, stream);
    }
  }
}

}  // namespace
}  // namespace pipeproof::interposer

// ---------------------------------------------------------------- the wrapped API

using pipeproof::CallKind;
using pipeproof::CommOrigin;
using pipeproof::interposer::CommState;
using pipeproof::interposer::IdHash;
using pipeproof::interposer::Process;

PIPEPROOF_EXPORT ncclResult_t ncclSend(const void* sendbuff, size_t count, ncclDataType_t datatype,
                                       int peer, ncclComm_t comm, cudaStream_t stream) {
  return pipeproof::interposer::Intercept(CallKind::kSend, sendbuff, nullptr, count, datatype, peer,
                                          comm, stream);
}

PIPEPROOF_EXPORT ncclResult_t ncclRecv(void* recvbuff, size_t count, ncclDataType_t datatype,
                                       int peer, ncclComm_t comm, cudaStream_t stream) {
  return pipeproof::interposer::Intercept(CallKind::kRecv, nullptr, recvbuff, count, datatype, peer,
                                          comm, stream);
}

PIPEPROOF_EXPORT ncclResult_t ncclGroupStart() {
  PIPEPROOF_REAL(ncclGroupStart);
  const ncclResult_t result = real_ncclGroupStart();
  if (result == ncclSuccess) ++pipeproof::interposer::t_group.depth;
  return result;
}

PIPEPROOF_EXPORT ncclResult_t ncclGroupEnd() {
  PIPEPROOF_REAL(ncclGroupEnd);
  auto& group = pipeproof::interposer::t_group;
  if (group.depth <= 0 || --group.depth > 0) return real_ncclGroupEnd();
  Process& p = Process::Get();
  const ncclResult_t held = pipeproof::interposer::PostHeldUnits(p);
  const ncclResult_t result = real_ncclGroupEnd();
  pipeproof::interposer::CompleteGroup(p, held != ncclSuccess ? held : result);
  group.Reset();
  return held != ncclSuccess ? held : result;
}

PIPEPROOF_EXPORT ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId,
                                               int rank) {
  PIPEPROOF_REAL(ncclCommInitRank);
  Process& p = Process::Get();
  const uint64_t id = IdHash().Add(commId).Get();
  auto* owner = p.RankOfRoot(id, CommOrigin::kInitRank, rank);
  const ncclResult_t result = real_ncclCommInitRank(comm, nranks, commId, rank);
  if ((result == ncclSuccess || result == ncclInProgress) && comm && *comm) {
    p.RegisterRoot(*comm, owner, id, CommOrigin::kInitRank, rank, nranks);
  }
  return result;
}

PIPEPROOF_EXPORT ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks,
                                                     ncclUniqueId commId, int rank,
                                                     ncclConfig_t* config) {
  PIPEPROOF_REAL(ncclCommInitRankConfig);
  Process& p = Process::Get();
  const uint64_t id = IdHash().Add(commId).Get();
  auto* owner = p.RankOfRoot(id, CommOrigin::kInitRankConfig, rank);
  const ncclResult_t result = real_ncclCommInitRankConfig(comm, nranks, commId, rank, config);
  if ((result == ncclSuccess || result == ncclInProgress) && comm && *comm) {
    p.RegisterRoot(*comm, owner, id, CommOrigin::kInitRankConfig, rank, nranks);
  }
  return result;
}

#if PIPEPROOF_NCCL_AT_LEAST(2, 23)
PIPEPROOF_EXPORT ncclResult_t ncclCommInitRankScalable(ncclComm_t* newcomm, int nranks, int myrank,
                                                       int nId, ncclUniqueId* commIds,
                                                       ncclConfig_t* config) {
  PIPEPROOF_REAL(ncclCommInitRankScalable);
  Process& p = Process::Get();
  const uint64_t id =
      commIds && nId > 0 ? IdHash().Add(commIds, sizeof(ncclUniqueId) * size_t(nId)).Get() : 1;
  auto* owner = p.RankOfRoot(id, CommOrigin::kInitScalable, myrank);
  const ncclResult_t result =
      real_ncclCommInitRankScalable(newcomm, nranks, myrank, nId, commIds, config);
  if ((result == ncclSuccess || result == ncclInProgress) && newcomm && *newcomm) {
    p.RegisterRoot(*newcomm, owner, id, CommOrigin::kInitScalable, myrank, nranks);
  }
  return result;
}
#endif

PIPEPROOF_EXPORT ncclResult_t ncclCommInitAll(ncclComm_t* comm, int ndev, const int* devlist) {
  PIPEPROOF_REAL(ncclCommInitAll);
  Process& p = Process::Get();
  const uint64_t id = p.NextInitAllId();
  std::vector<pipeproof::interposer::RankState*> owners;
  for (int i = 0; i < ndev; ++i) owners.push_back(p.RankOfRoot(id, CommOrigin::kInitAll, i));
  const ncclResult_t result = real_ncclCommInitAll(comm, ndev, devlist);
  if (result == ncclSuccess && comm) {
    for (int i = 0; i < ndev; ++i) {
      if (comm[i]) p.RegisterRoot(comm[i], owners[i], id, CommOrigin::kInitAll, i, ndev);
    }
  }
  return result;
}

PIPEPROOF_EXPORT ncclResult_t ncclCommSplit(ncclComm_t comm, int color, int key,
                                            ncclComm_t* newcomm, ncclConfig_t* config) {
  PIPEPROOF_REAL(ncclCommSplit);
  Process& p = Process::Get();
  CommState* parent = p.Lookup(comm);
  uint64_t sequence;
  {
    std::lock_guard lock(parent->owner->mutex);
    sequence = parent->children++;  // every member splits the parent in the same order
  }
  const ncclResult_t result = real_ncclCommSplit(comm, color, key, newcomm, config);
  if ((result == ncclSuccess || result == ncclInProgress) && newcomm && *newcomm) {
    const uint64_t id = IdHash().Add(parent->id).Add(sequence).Add(color).Get();
    p.RegisterChild(*newcomm, *parent, id, CommOrigin::kSplit);
  }
  return result;
}

#if PIPEPROOF_NCCL_AT_LEAST(2, 27)
PIPEPROOF_EXPORT ncclResult_t ncclCommShrink(ncclComm_t comm, int* excludeRanksList,
                                             int excludeRanksCount, ncclComm_t* newcomm,
                                             ncclConfig_t* config, int shrinkFlags) {
  PIPEPROOF_REAL(ncclCommShrink);
  Process& p = Process::Get();
  CommState* parent = p.Lookup(comm);
  uint64_t sequence;
  {
    std::lock_guard lock(parent->owner->mutex);
    sequence = parent->children++;
  }
  const ncclResult_t result =
      real_ncclCommShrink(comm, excludeRanksList, excludeRanksCount, newcomm, config, shrinkFlags);
  if ((result == ncclSuccess || result == ncclInProgress) && newcomm && *newcomm) {
    IdHash id;
    id.Add(parent->id).Add(sequence).Add(uint64_t{0x5368726b});  // "Shrk": apart from splits
    if (excludeRanksList && excludeRanksCount > 0)
      id.Add(excludeRanksList, sizeof(int) * size_t(excludeRanksCount));
    p.RegisterChild(*newcomm, *parent, id.Get(), CommOrigin::kShrink);
  }
  return result;
}
#endif

namespace pipeproof::interposer {
namespace {

// Marks a communicator gone; when it was its rank's last, writes the rank's trace now (a program
// may leave by os._exit() after destroying its process groups, before any exit hook runs).
ncclResult_t EndCommunicator(ncclComm_t comm, ncclResult_t (*real)(ncclComm_t), TraceCommFlag how) {
  Process& p = Process::Get();
  CommState* c = p.Forget(comm);
  const ncclResult_t result = real(comm);
  if (!c) return result;
  RankState& r = *c->owner;
  bool last;
  {
    std::lock_guard lock(r.mutex);
    if (c->index != kNoRecord) r.comms.At(c->index).flags |= how;
    last = --r.live_comms == 0;
    if (last) p.DrainCompletions(r, /*wait=*/true);
  }
  if (last && !p.disabled && !g_dumping.exchange(true)) {
    WriteRankTrace(r, 0);
    g_dumping = false;
  }
  return result;
}

}  // namespace
}  // namespace pipeproof::interposer

PIPEPROOF_EXPORT ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  PIPEPROOF_REAL(ncclCommDestroy);
  return pipeproof::interposer::EndCommunicator(comm, real_ncclCommDestroy,
                                                pipeproof::kCommDestroyed);
}

PIPEPROOF_EXPORT ncclResult_t ncclCommAbort(ncclComm_t comm) {
  PIPEPROOF_REAL(ncclCommAbort);
  return pipeproof::interposer::EndCommunicator(comm, real_ncclCommAbort, pipeproof::kCommAborted);
}
