// How ranks exchange tensors. A Transport is one rank's end of the fabric; the executor hands it
// communication units (a WAIT group, or a lone SEND/RECV) from the rank's communication streams,
// each stream's in program order (one stream per rank, per peer or per peer and direction: the
// run's StreamLayout), and the transport runs them with the `nccl` semantics of docs/design.md:
//   - no tags: the k-th send from p to q meets the k-th receive on q from p (the executor posts
//     each (sender, receiver) pair's ops in program order);
//   - rendezvous: a send completes only once its receive is posted, and vice versa;
//   - the ops of a unit progress independently; the unit completes when all of them have.
//
// Implementations: InProcessFabric's endpoints (threads of one process), MpiTransport (one
// process per rank; exec/mpi_world.h), the one-GPU streams transport (threads with device copies;
// exec/streams_transport.h) and the NCCL transport (each unit one ncclGroupStart/ncclSend/
// ncclRecv/ncclGroupEnd group on the communication stream; exec/nccl_transport.h), the last two
// built with CUDA only.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace pipeproof {

using Clock = std::chrono::steady_clock;

// Tells every part of a run to stop waiting (the watchdog found a hang, or a rank failed), and
// lets them sleep so that a stop wakes them. Thread-safe.
class StopSignal {
 public:
  bool stopped() const { return stopped_.load(std::memory_order_acquire); }
  void Stop();
  // Sleeps for `us` microseconds; false when stopped first.
  bool SleepFor(int64_t us);
  // `wake` is called once on Stop (to wake threads waiting on another condition variable); at
  // once if already stopped. It must not block. Returns a handle for Forget, after which `wake`
  // is not running and will not run.
  int OnStop(std::function<void()> wake);
  void Forget(int handle);

 private:
  std::atomic<bool> stopped_{false};
  std::mutex mutex_;  // for sleepers
  std::condition_variable cv_;
  std::mutex wakers_mutex_;
  std::vector<std::pair<int, std::function<void()>>> wakers_;
  int next_handle_ = 0;
};

// One SEND or RECV of a unit, as the transport sees it.
struct CommOp {
  bool send = false;
  int peer = 0;
  void* data = nullptr;  // the payload (send) or where it goes (receive); alive until completion
  size_t bytes = 0;
  uint32_t post_delay_us = 0;     // fault: wait this long before posting the op
  uint32_t deliver_delay_us = 0;  // fault (receive): the message arrives this much later
};

// Each op's progress, readable while the unit runs (the watchdog reports it).
enum class OpProgress : uint8_t { kNotPosted, kPosted, kArriving, kComplete };
std::string_view OpProgressName(OpProgress p);  // "not posted", "posted, no match yet", ...

struct UnitProgress {
  explicit UnitProgress(size_t ops) : ops(ops) {}
  std::vector<std::atomic<OpProgress>> ops;
  // Until when the transport is sleeping an injected delay for this unit (steady-clock ticks):
  // a unit in a delay is busy, not stuck.
  std::atomic<Clock::rep> delayed_until{0};
  void DelayUntil(Clock::time_point t) {
    Clock::rep v = t.time_since_epoch().count(), old = delayed_until.load();
    while (old < v && !delayed_until.compare_exchange_weak(old, v)) {
    }
  }
  bool Delayed(Clock::time_point now) const { return delayed_until.load() > now.time_since_epoch().count(); }
};

struct UnitResult {
  enum class Status { kComplete, kStopped, kFailed } status = Status::kComplete;
  std::string error;  // kFailed: what went wrong (a size mismatch, an MPI error)
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string Name() const = 0;  // "threads", "mpi"
  // Posts `ops` in the given order, each after its post delay, and returns once all of them have
  // completed (each receive after its delivery delay), or when the run is stopped. Thread-safe:
  // a rank's communication streams call it at the same time.
  virtual UnitResult RunUnit(std::span<const CommOp> ops, UnitProgress& progress) = 0;
  // Sets up this rank's channels to `peers` at once, as lazily created pair communicators are
  // set up (the pair stream layout): returns once each of them has called Connect with this rank
  // among its peers too, or when the run is stopped. Called once per peer, in the order the rank
  // first meets them.
  virtual UnitResult Connect(std::span<const int> peers) = 0;
};

}  // namespace pipeproof
