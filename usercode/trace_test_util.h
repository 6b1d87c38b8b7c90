// Traces built by hand for tests: ranks that make groups of sends and receives on one
// communicator, completed or left waiting, as the interposer would have recorded them.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "usercode/nccl_trace.h"

namespace pipeproof::testing {

struct TraceOp {
  CallKind kind;
  int peer;  // in the communicator
  uint64_t count;
};

inline TraceOp Send(int peer, uint64_t count = 64) { return {CallKind::kSend, peer, count}; }
inline TraceOp Recv(int peer, uint64_t count = 64) { return {CallKind::kRecv, peer, count}; }

class TraceBuilder {
 public:
  // Rank `rank` of a communicator of `nranks` with id `comm_id`; its rank in the communicator is
  // `comm_rank` (default: the same).
  TraceBuilder(int rank, int nranks, uint64_t comm_id = 0xC0FFEE, int comm_rank = -1) {
    trace_.header = MakeTraceHeader(rank, 4242, 1'700'000'000'000'000'000ull, "testhost");
    trace_.path = "rank" + std::to_string(rank) + ".pptrace";
    TraceComm c{};
    c.id = comm_id;
    c.handle = 0x1000 + rank;
    c.nranks = nranks;
    c.rank = comm_rank < 0 ? rank : comm_rank;
    c.origin = static_cast<uint8_t>(CommOrigin::kInitRank);
    c.device = -1;
    trace_.comms.push_back(c);
  }

  // A group (or a lone call, with one op and group = false). Completed, or left waiting: posted
  // and never completed.
  TraceBuilder& Unit(const std::vector<TraceOp>& ops, bool completed = true, bool group = true) {
    for (size_t k = 0; k < ops.size(); ++k) {
      TraceCall c{};
      c.kind = static_cast<uint8_t>(ops[k].kind);
      c.dtype = 7;  // float32
      c.flags = (group ? kCallInGroup : 0) | kCallPosted | (completed ? kCallCompleted : 0);
      c.comm = 0;
      c.peer = ops[k].peer;
      c.count = ops[k].count;
      c.unit = next_unit_;
      c.index_in_unit = static_cast<uint32_t>(k);
      c.posted_as = static_cast<uint32_t>(k);
      c.t_call = clock_ += 1000;
      c.t_complete = completed ? clock_ + 500 : 0;
      trace_.calls.push_back(c);
    }
    ++next_unit_;
    return *this;
  }

  TraceBuilder& OnSignal(int sig) {
    trace_.header.flags |= kTraceWrittenOnSignal;
    trace_.header.end_signal = sig;
    return *this;
  }

  Trace Build() const {
    Trace t = trace_;
    t.header.comm_count = static_cast<uint32_t>(t.comms.size());
    t.header.call_count = t.calls.size();
    return t;
  }

 private:
  Trace trace_;
  uint64_t next_unit_ = 0;
  uint64_t clock_ = 0;
};

}  // namespace pipeproof::testing
