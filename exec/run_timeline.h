// What a run really did, in time: every compute and every communication unit of every rank with
// its start and end, and every message between ranks. Pictures and traces of real runs
// (`pipeproof run --trace`, `pipeproof render --from-run`) are drawn from it.
//
// Recording is opt-in (ExecOptions::record_timeline). Each rank's executor appends a RecordedSpan
// per compute (on its program thread) and per completed unit (on its communication stream) to a
// SpanLog; the spans travel with the rank's results (RankResult::timeline, so also between MPI
// processes), and the leader puts them together with BuildRunTimeline. Times are steady-clock
// readings, which the processes of one machine share; across machines they are only as aligned as
// the machines' clocks.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "exec/run_plan.h"

namespace pipeproof {

// One span of one rank, as recorded.
struct RecordedSpan {
  bool comm = false;     // false: a compute (program thread); true: a unit (communication stream)
  int64_t action = 0;    // run-wide action index: the compute, or the action that posted the unit
  int64_t unit = -1;     // comm: the unit's run-wide index
  int64_t begin_ns = 0;  // steady clock, nanoseconds since its epoch
  int64_t end_ns = 0;
  friend bool operator==(const RecordedSpan&, const RecordedSpan&) = default;
};

// One rank's spans, appended by its program thread and its communication stream alike.
class SpanLog {
 public:
  void Add(const RecordedSpan& span);
  std::vector<RecordedSpan> Take();

 private:
  std::mutex mutex_;
  std::vector<RecordedSpan> spans_;
};

// The run's timeline, put together: names instead of indices, times in seconds since the first
// span began.
struct RunTimeline {
  struct Span {
    int rank = 0;
    bool comm = false;
    std::string pass;    // "train" or "inference"
    int index = 0;       // the action's position in the pass's program of the rank
    std::string action;  // that action as written ("3F4", "WAIT", "0SEND_F2")
    std::string ops;     // comm: the unit's ops, "0SEND_F2 -> 1, 7RECV_B0 <- 1"
    double start = 0;
    double end = 0;
  };
  struct Message {
    int from = 0;
    int to = 0;
    std::string pass;
    std::string payload;  // "activation 2->3 mb 5"
    int send_span = -1;   // index into spans: the sender's unit
    int recv_span = -1;   // the receiver's unit
    double sent = 0;      // when the sender's unit started
    double received = 0;  // when the receiver's unit completed
  };

  int ranks = 0;
  std::vector<Span> spans;  // by rank, then by start
  std::vector<Message> messages;

  std::string Json() const;
  // Reads what Json() wrote. Throws std::runtime_error saying what is missing or malformed.
  static RunTimeline FromJson(std::string_view text);
};

// `spans[r]`: rank r's recorded spans. A message is listed when both its units were recorded.
RunTimeline BuildRunTimeline(const RunPlan& plan,
                             const std::vector<std::vector<RecordedSpan>>& spans);

}  // namespace pipeproof
