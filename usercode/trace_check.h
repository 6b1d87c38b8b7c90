// `pipeproof trace check`: what the per-rank NCCL traces of one run (usercode/nccl_trace.h) say about
// the program that made them.
//
//   Matching   NCCL pairs point-to-point calls without tags: per communicator and ordered pair of
//              ranks, the k-th ncclSend from p to q meets the k-th ncclRecv on q from p. Each pair
//              must agree in count and data type; a call with no partner never completes. Where a
//              channel goes wrong, the report says how when the pattern shows it: two messages
//              posted in swapped order, a receive missing (the receives from there on meet the
//              sends one later), a send missing.
//   Hangs      Like PyTorch's Flight Recorder analyzer, from the calls that never completed: each
//              rank's blocked group and, for every call of it still waiting, on whom it waits: the
//              partner's rank, which is blocked in an earlier group or never made that call. A
//              cycle of such waits is the exact cross; for each pair of ranks on it, the first
//              call where their orders diverge (the first of their groups that does not meet one
//              group of the other).
//   Schedules  ScheduleFromTraces() turns the calls into a pipeproof schedule (mapping below), on
//              which the verifier's deadlock check under the `nccl` model says whether this call
//              order can deadlock under some timing, even when the recorded run did not.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "usercode/nccl_trace.h"
#include "schedule/schedule.h"

namespace pipeproof {

// A call of the run: the trace (by rank) and its index there, the k of the fault plan.
struct CallRef {
  int rank = -1;
  int64_t index = -1;
  bool valid() const { return rank >= 0; }
  friend bool operator==(const CallRef&, const CallRef&) = default;
};

struct TraceProblem {
  enum class Kind {
    kMissingTrace,  // a communicator member left no trace: its calls cannot be checked
    kMismatch,      // a send and its receive disagree in count or data type
    kUnmatched,     // a call with no partner
    kError,         // NCCL returned an error for calls
    kInconsistent,  // the traces contradict each other (two ranks claim one communicator rank)
  };
  Kind kind = Kind::kMismatch;
  std::string message;  // one line
  std::vector<std::string> details;
  CallRef call;     // the first call concerned
  CallRef partner;  // its partner, when it has one
};
std::string_view TraceProblemKindName(TraceProblem::Kind kind);  // "missing trace", ...

// One step of a hang's cycle: `rank` waits in `call` for `waits_for_rank`.
struct HangStep {
  int rank = 0;
  CallRef call;
  int waits_for_rank = 0;
  std::string why;  // "its receive is rank 1's call #14 in group #8; rank 1 is blocked in group #7"
};

struct HangReport {
  std::string headline;            // "ranks 0 and 1 wait for each other: a cross"
  std::vector<std::string> ranks;  // one line per rank: blocked where, or finished
  std::vector<HangStep> cycle;     // empty when the waits end at a rank that will never answer
  std::vector<std::string> explanation;  // the cross, the divergence, what to do
};

struct TraceCheckReport {
  struct RankSummary {
    int rank = 0;
    uint32_t pid = 0;
    std::string host;
    std::string path;
    int64_t calls = 0;
    int64_t units = 0;
    int64_t pending = 0;  // calls that never completed
    int end_signal = 0;
    bool gpu_completion = false;
  };
  std::vector<RankSummary> ranks;
  int64_t communicators = 0;
  int64_t calls = 0;
  int64_t matched = 0;  // send/receive pairs
  std::vector<TraceProblem> problems;
  std::optional<HangReport> hang;
  std::vector<std::string> notes;  // what limits the check (signals, dropped calls, ...)

  bool ok() const { return problems.empty() && !hang; }
  std::string Text() const;
  std::string Json()
      const;  // {"ok", "ranks", "communicators", "calls", "matched", "problems", "hang", "notes"}
};

TraceCheckReport CheckTraces(const std::vector<Trace>& traces);

// The calls as a pipeproof schedule, for the deadlock check. The mapping:
//   - a schedule rank per trace rank; a stage per rank (stage r on rank r);
//   - every message (a send and the receive it meets, or a call left without a partner) is a
//     microbatch of its own, whose route is [sender's stage, receiver's stage]: the send is
//     "p SEND_F m" on the sender, the receive "q RECV_F m" on the receiver. A trace has no stage
//     or microbatch; these synthetic ones only name each message uniquely;
//   - every unit becomes its sends and receives in call order, then a WAIT: a group is one NCCL
//     group, and a lone call is a group of one, which under the `nccl` model waits exactly as a
//     lone call on the rank's in-order stream does. A rank's units thus run one after another, as
//     on one stream (programs that put calls on several streams or communicators get the verdict
//     for one stream: it may report a deadlock their streams avoid);
//   - the schedule is a forward-only pass (a message carries nothing back), and the structure
//     check wants an F of every stage of every microbatch: the sender gets "p F m" before its
//     send's group, the receiver "q F m" after its receive's group (at its end when it never made
//     the receive). They wait for nothing in the `nccl` model's grouped ranks, so they cannot
//     change the deadlock verdict, and the file verifies as the program it is: a receive's F
//     depends on the message it received, and a message that no call meets fails;
//   - NCCL matches per communicator, the schedule per rank pair: communicators are merged in call
//     order (a note says so when two of them connect the same ranks), and self-sends are left out.
struct TraceSchedule {
  Schedule schedule;
  // Per rank, per action of the schedule: the call it stands for (SEND/RECV), or for a WAIT the
  // first call of its unit; invalid for the synthetic computes.
  std::vector<std::vector<CallRef>> origin;
  std::vector<std::string> notes;
};
// InputError when the traces hold no message to schedule or more than the schedule model's
// limits allow (stages x microbatches <= 2^20).
TraceSchedule ScheduleFromTraces(const std::vector<Trace>& traces);

// "rank 0 call #12 (ncclSend 4096 x float32 to rank 1, group #7)".
std::string DescribeCall(const std::vector<Trace>& traces, const CallRef& call);

// The verifier's deadlock check (nccl model, one in-order stream per rank) on the calls as a
// schedule, its cycle told in calls: `trace check --deadlock`.
struct TraceDeadlockVerdict {
  bool ok = true;
  std::string text;  // the report's lines
  std::string json;  // {"ok", "message", "cycle": [{"rank", "call", "action", "waits_for"}], "notes"}
};
TraceDeadlockVerdict CheckTraceDeadlock(const std::vector<Trace>& traces, const TraceSchedule& ts,
                                        bool use_z3);

// A trace call by call, as `trace show` prints it.
std::string FormatTrace(const Trace& trace);

}  // namespace pipeproof
