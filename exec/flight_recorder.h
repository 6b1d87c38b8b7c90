// The flight recorder: per rank, what it is doing now and the last things it did, with
// timestamps, kept in a small ring so that recording costs little. When the watchdog declares a
// hang it snapshots every rank's recorder and prints the dump: each rank's blocked action (with
// the state of every op of the unit it waits for) and its last actions.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "exec/run_plan.h"
#include "exec/transport.h"

namespace pipeproof {

// What a rank's program thread is doing. Busy states mean progress is being made; a hang is when
// no rank is busy and none has made progress for the timeout.
enum class RankActivity : uint8_t {
  kStarting,
  kComputing,
  kDelaying,   // sleeping an injected delay
  kBlocked,    // waiting for communication (a unit, the end of a pass, the results)
  kDone,
  kDead,       // stopped by the fault plan's kill
  kFailed,     // an error ended the rank
};
std::string_view RankActivityName(RankActivity activity);
bool IsBusy(RankActivity activity);

enum class FlightEventKind : uint8_t {
  kStarted,       // an action began
  kFinished,      // an action ended
  kUnitPosted,    // a unit's ops were handed to the transport
  kUnitComplete,  // all its ops completed
  kDelayed,       // an injected delay (detail: microseconds)
  kDropped,       // the fault plan dropped a send (negative control)
  kCorrupted,     // the fault plan flipped a bit or swapped payloads (negative control)
  kKilled,        // the fault plan stopped the rank
  kFailed,
};
std::string_view FlightEventName(FlightEventKind kind);

// A unit a rank is waiting on: its ops as text ("3SEND_F4 -> rank 4") and their live progress.
struct UnitView {
  std::string what;  // "group #6 posted by [14] WAIT"
  std::vector<std::string> ops;
  std::shared_ptr<UnitProgress> progress;
  std::string Describe() const;  // what, then each op with its progress
};

struct FlightEntry {
  double t = 0;        // seconds since the run started
  std::string action;  // "train [12] 3SEND_F4", or "" for events of no action
  std::string event;   // "started", "finished", "delayed 120us", ...
};

// One rank's state at one moment, as the dump prints it; also what MPI ranks send each other.
struct RankSnapshot {
  int rank = 0;
  RankActivity activity = RankActivity::kStarting;
  std::string doing;          // the current action or wait, in words
  std::string stream;         // the communication streams' running units, if any
  double activity_age = 0;    // seconds in the current activity
  double progress_age = 0;    // seconds since the rank last made progress
  std::vector<FlightEntry> tail;  // oldest first
  bool answered = true;       // false: the rank never answered (MPI), nothing else is known
  bool busy = false;          // FlightRecorder::Busy() when taken

  std::string Text() const;
  std::string Json() const;
  static RankSnapshot FromJson(const std::string& text);  // throws std::runtime_error
};

class FlightRecorder {
 public:
  FlightRecorder(int rank, const RunPlan& plan, size_t capacity, Clock::time_point start);

  void Record(int64_t action, FlightEventKind kind, int64_t detail = 0);
  void SetActivity(RankActivity activity, std::string doing = "",
                   std::shared_ptr<const UnitView> waiting_on = nullptr);
  // Communication stream `stream`'s running unit, or null.
  void SetStreamUnit(int stream, std::shared_ptr<const UnitView> unit);

  RankActivity activity() const;
  // Busy: computing, sleeping an injected delay, or waiting on a unit whose transport is sleeping
  // one. A rank that is not busy and makes no progress is stuck.
  bool Busy() const;
  // When the rank last made progress; the end of an injected delay it is waiting on counts.
  Clock::time_point last_progress() const;
  RankSnapshot Snapshot(size_t tail) const;
  int rank() const { return rank_; }
  // Actions finished so far (FlightEventKind::kFinished events), for progress lines.
  int64_t finished_actions() const { return finished_actions_.load(std::memory_order_relaxed); }

 private:
  Clock::time_point LastProgressLocked() const;

  struct Event {
    Clock::time_point at;
    int64_t action;
    FlightEventKind kind;
    int64_t detail;
  };
  const int rank_;
  const RunPlan& plan_;
  const Clock::time_point start_;
  mutable std::mutex mutex_;
  std::vector<Event> ring_;
  size_t next_ = 0;
  size_t count_ = 0;
  RankActivity activity_ = RankActivity::kStarting;
  Clock::time_point activity_since_;
  Clock::time_point last_progress_;
  std::string doing_;
  std::shared_ptr<const UnitView> waiting_on_;
  std::map<int, std::shared_ptr<const UnitView>> stream_units_;
  std::atomic<int64_t> finished_actions_{0};
};

// The whole dump: a headline, then every rank's snapshot.
std::string FormatDump(const std::string& headline, const std::vector<RankSnapshot>& ranks);
std::string DumpJson(const std::string& headline, const std::vector<RankSnapshot>& ranks);

}  // namespace pipeproof
