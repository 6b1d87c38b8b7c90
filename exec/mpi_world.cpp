#include "exec/mpi_world.h"

#include <fmt/format.h>
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <map>
#include <memory>
#include <thread>

namespace pipeproof {

bool HaveMpi() { return true; }

namespace {

// MPI is initialised with MPI_THREAD_SERIALIZED: threads take turns, every call under this lock.
// Only non-blocking calls are made while holding it, so no thread waits long for it.
std::mutex& MpiMutex() {
  static std::mutex mutex;
  return mutex;
}

template <class F>
auto Locked(F f) {
  std::lock_guard lock(MpiMutex());
  return f();
}

enum Tag : int { kQueryTag = 1, kAnswerTag = 2, kResultTag = 3, kStatusTag = 4 };

std::string MpiError(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, length);
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Waiting without blocking inside MPI: yield for a while, then sleep in growing steps.
class Backoff {
 public:
  void Pause() {
    if (++spins_ < 64) {
      std::this_thread::yield();
      return;
    }
    const int step = std::min(50 << std::min((spins_ - 64) / 64, 3), 400);
    std::this_thread::sleep_for(std::chrono::microseconds(step));
  }

 private:
  int spins_ = 0;
};

// Polls a request until it completes.
void WaitPolling(MPI_Request& request, MPI_Status* status = MPI_STATUS_IGNORE) {
  Backoff backoff;
  while (true) {
    int done = 0;
    Locked([&] { return MPI_Test(&request, &done, status); });
    if (done) return;
    backoff.Pause();
  }
}

class MpiTransport final : public Transport {
 public:
  MpiTransport(MPI_Comm comm, int rank, int size, StopSignal& stop)
      : comm_(comm), rank_(rank), size_(size), stop_(stop) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string Name() const override { return "mpi"; }

  // A zero-byte synchronous exchange with each of `peers` on a tag of its own (the data's FIFO on
  // tag 0 is untouched): it completes only once both ranks of each pair have posted it, as NCCL's
  // set-up of a two-rank communicator does.
  UnitResult Connect(std::span<const int> peers) override {
    constexpr int kConnectTag = 1;
    std::vector<MPI_Request> requests(2 * peers.size(), MPI_REQUEST_NULL);
    for (size_t k = 0; k < peers.size(); ++k) {
      const int rc = Locked([&] {
        const int sent = MPI_Issend(nullptr, 0, MPI_BYTE, peers[k], kConnectTag, comm_, &requests[2 * k]);
        return sent != MPI_SUCCESS
                   ? sent
                   : MPI_Irecv(nullptr, 0, MPI_BYTE, peers[k], kConnectTag, comm_, &requests[2 * k + 1]);
      });
      if (rc != MPI_SUCCESS) return {UnitResult::Status::kFailed, MpiError(rc)};
    }
    Backoff backoff;
    while (true) {
      int done = 0;
      const int test = Locked([&] {
        return MPI_Testall(static_cast<int>(requests.size()), requests.data(), &done, MPI_STATUSES_IGNORE);
      });
      if (test != MPI_SUCCESS) return {UnitResult::Status::kFailed, MpiError(test)};
      if (done) return {};
      if (stop_.stopped()) return {UnitResult::Status::kStopped, ""};
      backoff.Pause();
    }
  }

  UnitResult RunUnit(std::span<const CommOp> ops, UnitProgress& progress) override {
    const size_t n = ops.size();
    std::vector<MPI_Request> requests(n, MPI_REQUEST_NULL);
    std::vector<bool> done(n, false);
    std::vector<Clock::time_point> due(n);
    auto fail = [&](std::string what) {
      for (MPI_Request& r : requests) {
        if (r != MPI_REQUEST_NULL) Locked([&] { return MPI_Request_free(&r); });
      }
      return UnitResult{UnitResult::Status::kFailed, std::move(what)};
    };
    for (size_t k = 0; k < n; ++k) {
      const CommOp& op = ops[k];
      if (op.bytes > static_cast<size_t>(INT_MAX)) return fail("a message of more than 2 GiB");
      if (op.post_delay_us) progress.DelayUntil(Clock::now() + std::chrono::microseconds(op.post_delay_us));
      if (op.post_delay_us && !stop_.SleepFor(op.post_delay_us)) return {UnitResult::Status::kStopped, ""};
      const int count = static_cast<int>(op.bytes);
      const int rc = Locked([&] {
        return op.send ? MPI_Issend(op.data, count, MPI_BYTE, op.peer, 0, comm_, &requests[k])
                       : MPI_Irecv(op.data, count, MPI_BYTE, op.peer, 0, comm_, &requests[k]);
      });
      if (rc != MPI_SUCCESS) return fail(fmt::format("posting to rank {}: {}", op.peer, MpiError(rc)));
      progress.ops[k].store(OpProgress::kPosted);
    }
    Backoff backoff;
    std::vector<int> indices(n);
    std::vector<MPI_Status> statuses(n);
    size_t remaining = n;
    while (true) {
      if (remaining > 0) {
        int count = 0;
        const int rc = Locked([&] {
          return MPI_Testsome(static_cast<int>(n), requests.data(), &count, indices.data(), statuses.data());
        });
        if (rc != MPI_SUCCESS && rc != MPI_ERR_IN_STATUS) return fail(MpiError(rc));
        const Clock::time_point now = Clock::now();
        for (int i = 0; i < count && count != MPI_UNDEFINED; ++i) {
          const size_t k = static_cast<size_t>(indices[i]);
          const CommOp& op = ops[k];
          if (rc == MPI_ERR_IN_STATUS && statuses[i].MPI_ERROR != MPI_SUCCESS) {
            return fail(fmt::format("{} rank {}: {}", op.send ? "sending to" : "receiving from", op.peer,
                                    MpiError(statuses[i].MPI_ERROR)));
          }
          if (!op.send) {
            int received = 0;
            MPI_Get_count(&statuses[i], MPI_BYTE, &received);
            if (received != static_cast<int>(op.bytes)) {
              return fail(fmt::format("message size mismatch: rank {} sent {} bytes, {} expected", op.peer, received, op.bytes));
            }
          }
          done[k] = true;
          due[k] = now + std::chrono::microseconds(op.deliver_delay_us);
          progress.DelayUntil(due[k]);
          progress.ops[k].store(op.deliver_delay_us ? OpProgress::kArriving : OpProgress::kComplete);
          --remaining;
        }
      }
      if (remaining == 0) {
        Clock::time_point last = Clock::time_point::min();
        for (size_t k = 0; k < n; ++k) last = std::max(last, due[k]);
        const auto wait = std::chrono::duration_cast<std::chrono::microseconds>(last - Clock::now()).count();
        if (wait > 0 && !stop_.SleepFor(wait)) return {UnitResult::Status::kStopped, ""};
        for (size_t k = 0; k < n; ++k) progress.ops[k].store(OpProgress::kComplete);
        return {};
      }
      backoff.Pause();
    }
  }

 private:
  MPI_Comm comm_;
  int rank_;
  int size_;
  StopSignal& stop_;
};

// The cross-process watchdog (see mpi_world.h). Runs on its own thread; every MPI call it makes
// is non-blocking, under the MPI lock.
class MpiWatchdog {
 public:
  MpiWatchdog(MPI_Comm ctrl, int rank, int size, FlightRecorder& recorder, const WatchdogOptions& options,
              std::function<void(const Execution&)> on_fatal)
      : ctrl_(ctrl), rank_(rank), size_(size), recorder_(recorder), options_(options),
        on_fatal_(std::move(on_fatal)) {}
  ~MpiWatchdog() { Finish(); }

  void Start() { thread_ = std::thread([this] { Loop(); }); }

  // Ends the thread and completes the answers it sent.
  void Finish() {
    finish_ = true;
    if (thread_.joinable()) thread_.join();
    for (auto& sent : sent_) WaitPolling(sent->request);
    sent_.clear();
  }

  // The rank failed: report it with every rank's state and end the job. Does not return.
  [[noreturn]] void Fail(const std::string& headline) {
    {
      std::lock_guard lock(mutex_);
      failure_ = headline;
    }
    while (true) std::this_thread::sleep_for(std::chrono::seconds(1));
  }

 private:
  void Loop() {
    const auto tick = std::chrono::duration<double>(std::clamp(options_.timeout_s / 20, 0.005, 0.05));
    while (!finish_) {
      std::this_thread::sleep_for(tick);
      const bool dead = recorder_.activity() == RankActivity::kDead;
      Receive(dead);
      if (dead) continue;  // a dead rank answers nothing and asks nothing
      const Clock::time_point now = Clock::now();
      if (!in_round_) {
        std::string failure;
        {
          std::lock_guard lock(mutex_);
          failure = failure_;
        }
        if (!failure.empty() || (Stalled(now) && now >= next_check_)) StartRound(failure);
      } else if (static_cast<int>(answers_.size()) == size_ - 1 || now >= round_deadline_) {
        Decide();
      }
    }
  }

  bool LowerRankAnswered() const { return !answers_.empty() && answers_.begin()->first < rank_; }

  void LookAgainIn(double seconds) {
    next_check_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  }

  bool Stalled(Clock::time_point now) const {
    return !recorder_.Busy() &&
           Seconds(now - recorder_.last_progress()) >= options_.timeout_s;
  }

  // Answers queries and collects answers; a query from a lower rank during our own round means
  // that rank will report, so ours is dropped.
  void Receive(bool dead) {
    while (true) {
      int flag = 0;
      MPI_Status status;
      Locked([&] { return MPI_Iprobe(MPI_ANY_SOURCE, kQueryTag, ctrl_, &flag, &status); });
      if (!flag) break;
      int round = 0;
      Locked([&] { return MPI_Recv(&round, 1, MPI_INT, status.MPI_SOURCE, kQueryTag, ctrl_, MPI_STATUS_IGNORE); });
      if (dead) continue;
      Answer(status.MPI_SOURCE, round);
      if (in_round_ && status.MPI_SOURCE < rank_) {
        in_round_ = false;
        LookAgainIn(options_.timeout_s);
      }
    }
    while (true) {
      int flag = 0;
      MPI_Status status;
      Locked([&] { return MPI_Iprobe(MPI_ANY_SOURCE, kAnswerTag, ctrl_, &flag, &status); });
      if (!flag) break;
      int bytes = 0;
      MPI_Get_count(&status, MPI_CHAR, &bytes);
      std::string text(static_cast<size_t>(bytes), '\0');
      Locked([&] { return MPI_Recv(text.data(), bytes, MPI_CHAR, status.MPI_SOURCE, kAnswerTag, ctrl_, MPI_STATUS_IGNORE); });
      // "round\n" then the snapshot.
      const size_t newline = text.find('\n');
      if (!in_round_ || newline == std::string::npos || text.substr(0, newline) != std::to_string(round_)) continue;
      try {
        answers_[status.MPI_SOURCE] = RankSnapshot::FromJson(text.substr(newline + 1));
      } catch (const std::exception&) {
      }
    }
  }

  // A message in flight: its buffer must stay put until the send completes.
  struct Sent {
    MPI_Request request = MPI_REQUEST_NULL;
    std::string text;
    int round = 0;
  };

  void Send(int to, int tag, std::unique_ptr<Sent> sent, bool as_int) {
    Locked([&] {
      return as_int ? MPI_Isend(&sent->round, 1, MPI_INT, to, tag, ctrl_, &sent->request)
                    : MPI_Isend(sent->text.data(), static_cast<int>(sent->text.size()), MPI_CHAR, to, tag,
                                ctrl_, &sent->request);
    });
    sent_.push_back(std::move(sent));
  }

  void Answer(int to, int round) {
    auto sent = std::make_unique<Sent>();
    sent->text = fmt::format("{}\n{}", round, recorder_.Snapshot(options_.flight_tail).Json());
    Send(to, kAnswerTag, std::move(sent), false);
  }

  void StartRound(const std::string& failure) {
    in_round_ = true;
    failure_round_ = !failure.empty();
    failure_headline_ = failure;
    ++round_;
    answers_.clear();
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      auto query = std::make_unique<Sent>();
      query->round = round_;
      Send(r, kQueryTag, std::move(query), true);
    }
    const double grace = std::clamp(options_.timeout_s / 2, 0.3, 3.0);
    round_deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(grace));
  }

  void Decide() {
    in_round_ = false;
    std::vector<RankSnapshot> snapshots;
    double youngest = Seconds(Clock::now() - recorder_.last_progress());
    bool busy = false;
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) {
        snapshots.push_back(recorder_.Snapshot(options_.flight_tail));
      } else if (auto it = answers_.find(r); it != answers_.end()) {
        snapshots.push_back(it->second);
        busy |= it->second.busy;
        youngest = std::min(youngest, it->second.progress_age);
      } else {
        RankSnapshot silent;
        silent.rank = r;
        silent.answered = false;
        snapshots.push_back(silent);
      }
    }
    Execution e;
    e.snapshots = std::move(snapshots);
    e.seconds = Seconds(Clock::now() - recorder_start_);
    if (failure_round_) {
      e.end = Execution::End::kFailed;
      e.headline = failure_headline_;
    } else if (!busy && youngest >= options_.timeout_s) {
      if (LowerRankAnswered()) {
        // One report per job: the lowest rank that answers reports the hang. It is stalled too
        // (no rank moves), so its own round comes; ours would race it to print before MPI_Abort.
        LookAgainIn(options_.timeout_s);
        return;
      }
      e.end = Execution::End::kHang;
      std::map<std::string, int> census;
      for (const RankSnapshot& s : e.snapshots) {
        ++census[s.answered ? std::string(RankActivityName(s.activity)) : "silent (dead or stuck)"];
      }
      std::vector<std::string> parts;
      for (const auto& [name, n] : census) parts.push_back(fmt::format("{} {}", n, name));
      e.headline = fmt::format("hang: no rank has made progress for {:.2f}s (--timeout {:g}s); ranks: {} (found by rank {})",
                               youngest, options_.timeout_s, fmt::join(parts, ", "), rank_);
    } else {
      // Someone is still moving: look again once the youngest could have been stuck long enough.
      LookAgainIn(std::max(busy ? options_.timeout_s / 4 : options_.timeout_s - youngest, 0.01));
      return;
    }
    try {
      if (on_fatal_) on_fatal_(e);
    } catch (const std::exception& error) {  // the report could not be written: still end the job
      std::fprintf(stderr, "%s\npipeproof: %s\n", FormatDump(e.headline, e.snapshots).c_str(), error.what());
    }
    std::fflush(stdout);
    std::fflush(stderr);
    Locked([&] { return MPI_Abort(MPI_COMM_WORLD, 3); });
    std::_Exit(3);
  }

 public:
  Clock::time_point recorder_start_ = Clock::now();

 private:
  MPI_Comm ctrl_;
  int rank_;
  int size_;
  FlightRecorder& recorder_;
  WatchdogOptions options_;
  std::function<void(const Execution&)> on_fatal_;
  std::atomic<bool> finish_{false};
  std::thread thread_;
  std::mutex mutex_;
  std::string failure_;
  bool in_round_ = false;
  bool failure_round_ = false;
  std::string failure_headline_;
  int round_ = 0;
  std::map<int, RankSnapshot> answers_;
  std::vector<std::unique_ptr<Sent>> sent_;  // queries and answers, completed at Finish
  Clock::time_point round_deadline_;
  Clock::time_point next_check_ = Clock::now();
};

class MpiWorld final : public World {
 public:
  MpiWorld(MpiTransportFactory make_transport, std::string name)
      : make_transport_(std::move(make_transport)), name_(std::move(name)) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) throw InputError("MPI is already initialised in this process");
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
    if (provided < MPI_THREAD_SERIALIZED) {
      MPI_Finalize();
      throw InputError("this MPI does not offer MPI_THREAD_SERIALIZED, which the MPI transport needs");
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm_dup(MPI_COMM_WORLD, &data_);
    MPI_Comm_dup(MPI_COMM_WORLD, &ctrl_);
    MPI_Comm_set_errhandler(data_, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(ctrl_, MPI_ERRORS_RETURN);
  }

  ~MpiWorld() override {
    watchdog_.reset();
    MPI_Comm_free(&data_);
    MPI_Comm_free(&ctrl_);
    MPI_Finalize();
  }

  std::string TransportName() const override { return fmt::format("{} ({} processes)", name_, size_); }
  int ranks() const override { return size_; }
  bool leader() const override { return rank_ == 0; }

  Execution Execute(const RunPlan& plan, const FaultPlan& faults, const ExecOptions& options,
                    const WatchdogOptions& watchdog, const std::function<void(const Execution&)>& on_hang) override {
    if (plan.ranks != size_) {
      throw InputError(fmt::format("the schedule has {} ranks but mpirun started {} processes; use mpirun -np {}",
                                   plan.ranks, size_, plan.ranks));
    }
    PolledBarrier();
    const Clock::time_point start = Clock::now();
    recorder_ = std::make_unique<FlightRecorder>(rank_, plan, options.flight_capacity, start);
    watchdog_ = std::make_unique<MpiWatchdog>(ctrl_, rank_, size_, *recorder_, watchdog, on_hang);
    watchdog_->recorder_start_ = start;
    watchdog_->Start();
    std::unique_ptr<Device> device = MakeDevice(options, rank_);
    StopSignal stop;  // nothing stops an MPI rank from inside: the watchdog aborts the job
    std::unique_ptr<Transport> transport;
    if (make_transport_) {
      recorder_->SetActivity(RankActivity::kBlocked, fmt::format("setting up the {} transport", name_));
      transport = make_transport_({rank_, size_, [this](void* data, size_t bytes) { Broadcast(data, bytes); }},
                                  *device, stop);
    } else {
      transport = std::make_unique<MpiTransport>(data_, rank_, size_, stop);
    }
    RankOutcome outcome = RunRank(plan, faults, options, *transport, *device, *recorder_, stop);
    if (outcome.end == RankEnd::kDead) {
      while (true) std::this_thread::sleep_for(std::chrono::seconds(1));  // until the job is aborted
    }
    if (outcome.end != RankEnd::kFinished) {
      watchdog_->Fail(fmt::format("runtime fault on rank {}: {}", rank_, outcome.error));
    }
    Execution e;
    if (rank_ == 0) {
      e.ranks = GatherResults(std::move(outcome.result));
      recorder_->SetActivity(RankActivity::kComputing, "comparing every rank's results with the sequential reference");
    } else {
      SendResults(outcome.result);
      recorder_->SetActivity(RankActivity::kBlocked, "waiting for rank 0's verdict");
    }
    e.seconds = Seconds(Clock::now() - start);
    return e;
  }

  int AgreeOnStatus(int status) override {
    if (rank_ == 0) {
      std::vector<MPI_Request> requests(size_, MPI_REQUEST_NULL);
      for (int r = 1; r < size_; ++r) {
        Locked([&] { return MPI_Isend(&status, 1, MPI_INT, r, kStatusTag, ctrl_, &requests[r]); });
      }
      for (int r = 1; r < size_; ++r) WaitPolling(requests[r]);
    } else {
      MPI_Request request;
      Locked([&] { return MPI_Irecv(&status, 1, MPI_INT, 0, kStatusTag, ctrl_, &request); });
      WaitPolling(request);
    }
    if (recorder_) recorder_->SetActivity(RankActivity::kDone, "finished");
    if (watchdog_) watchdog_->Finish();
    return status;
  }

 private:
  void PolledBarrier() {
    MPI_Request request;
    Locked([&] { return MPI_Ibarrier(ctrl_, &request); });
    WaitPolling(request);
  }

  // On the data communicator, which the hooked transport leaves unused.
  void Broadcast(void* data, size_t bytes) {
    MPI_Request request;
    Locked([&] { return MPI_Ibcast(data, static_cast<int>(bytes), MPI_BYTE, 0, data_, &request); });
    WaitPolling(request);
  }

  std::vector<RankResult> GatherResults(RankResult mine) {
    std::vector<RankResult> all(size_);
    all[0] = std::move(mine);
    recorder_->SetActivity(RankActivity::kBlocked, "collecting every rank's results");
    Backoff backoff;
    for (int received = 1; received < size_;) {
      int flag = 0;
      MPI_Status status;
      Locked([&] { return MPI_Iprobe(MPI_ANY_SOURCE, kResultTag, ctrl_, &flag, &status); });
      if (!flag) {
        backoff.Pause();
        continue;
      }
      int bytes = 0;
      MPI_Get_count(&status, MPI_BYTE, &bytes);
      std::string data(static_cast<size_t>(bytes), '\0');
      MPI_Request request;
      Locked([&] { return MPI_Irecv(data.data(), bytes, MPI_BYTE, status.MPI_SOURCE, kResultTag, ctrl_, &request); });
      WaitPolling(request);
      all[status.MPI_SOURCE] = RankResult::Deserialize(data);
      recorder_->Record(-1, FlightEventKind::kUnitComplete, -1);
      ++received;
      backoff = Backoff();
    }
    return all;
  }

  void SendResults(const RankResult& result) {
    recorder_->SetActivity(RankActivity::kBlocked, "sending its results to rank 0");
    std::string data = result.Serialize();
    MPI_Request request;
    Locked([&] { return MPI_Isend(data.data(), static_cast<int>(data.size()), MPI_BYTE, 0, kResultTag, ctrl_, &request); });
    WaitPolling(request);
  }

  int rank_ = 0;
  int size_ = 1;
  MPI_Comm data_ = MPI_COMM_NULL;
  MPI_Comm ctrl_ = MPI_COMM_NULL;
  std::unique_ptr<FlightRecorder> recorder_;
  std::unique_ptr<MpiWatchdog> watchdog_;
  MpiTransportFactory make_transport_;
  std::string name_;
};

}  // namespace

std::unique_ptr<World> MakeMpiWorld(MpiTransportFactory make_transport, std::string name) {
  return std::make_unique<MpiWorld>(std::move(make_transport), std::move(name));
}

}  // namespace pipeproof
