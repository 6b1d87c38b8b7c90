// NCCL call traces: what the interposer (libpipeproof_nccl.so) records of a user's program, one
// file per rank, and what `pipeproof trace check` reads. The one definition of the format: the
// interposer writes its in-memory records as they are (from a fatal-signal handler too, so the
// layout is fixed-size little-endian records and writing needs nothing but write(2)), and the
// strict reader below refuses anything the interposer could not have written.
//
// File layout, version 1 (all integers little-endian):
//   TraceHeader          128 bytes
//   TraceComm  x comms    48 bytes each: the communicators this rank used
//   TraceCall  x calls    64 bytes each: every ncclSend/ncclRecv, in the order the program called
//
// Counters. A rank numbers its ncclSend/ncclRecv calls 0, 1, 2, ... (the call's index in the
// file) and its units 0, 1, 2, ...: a unit is the rank's part of one ncclGroupStart/End group, or
// a lone call outside any group. These are exactly the counters a fault plan names (exec/
// fault_plan.h: the k-th communication op, the k-th unit), so a plan drawn for a schedule applies
// to a program that makes the same calls, and a trace says which delay each call received.
//
// Times are nanoseconds on the rank's monotonic clock since `epoch_realtime_ns` (the wall-clock
// time of the trace's time zero), so traces of one machine line up to the microsecond and traces
// of several machines as well as their clocks agree.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <system_error>
#include <string_view>
#include <vector>

namespace pipeproof {

static_assert(std::endian::native == std::endian::little,
              "NCCL traces are written as the machine holds them: little-endian only");

inline constexpr char kTraceMagic[8] = {'P', 'P', 'N', 'C', 'C', 'L', 'T', 'R'};
inline constexpr uint16_t kTraceVersion = 1;
inline constexpr char kTraceFileSuffix[] = ".pptrace";

// TraceHeader::flags
enum TraceFlag : uint32_t {
  kTraceWrittenOnSignal = 1u << 0,  // a fatal signal (end_signal) ended the process
  kTraceCallsDropped = 1u << 1,     // the rank made more calls than the buffer holds
  kTraceGpuCompletion = 1u << 2,    // completion times come from CUDA events on the streams
  kTraceGpuDelays = 1u << 3,        // delays ran as spin kernels on the calls' streams
};
inline constexpr uint32_t kTraceKnownFlags = 0xF;

// How a call's completion time was taken (TraceHeader::flags): with kTraceGpuCompletion, when a
// CUDA event recorded on the call's stream after it (after the group's ncclGroupEnd) completed;
// without, when the call (or its group's ncclGroupEnd) returned to the program. Real NCCL returns
// once the work is queued, so without CUDA events "completed" only means "handed to the GPU".

struct TraceHeader {
  char magic[8];
  uint16_t version;
  uint16_t header_bytes;  // sizeof(TraceHeader)
  uint16_t comm_bytes;    // sizeof(TraceComm)
  uint16_t call_bytes;    // sizeof(TraceCall)
  int32_t rank;           // the rank this file is about (see usercode/nccl_interposer.cpp for how)
  uint32_t pid;
  uint32_t comm_count;
  uint32_t flags;  // TraceFlag
  uint64_t call_count;
  uint64_t epoch_realtime_ns;  // CLOCK_REALTIME at time zero
  int32_t end_signal;          // the signal that ended the process (with kTraceWrittenOnSignal)
  uint32_t reserved0;
  uint64_t dropped_calls;  // calls not recorded (with kTraceCallsDropped)
  char host[64];           // host name, NUL-terminated, zero-padded
};
static_assert(sizeof(TraceHeader) == 128);

enum class CommOrigin : uint8_t {
  kInitRank = 1,        // ncclCommInitRank
  kInitRankConfig = 2,  // ncclCommInitRankConfig
  kInitAll = 3,         // ncclCommInitAll (one process, several ranks)
  kSplit = 4,           // ncclCommSplit
  kShrink = 5,          // ncclCommShrink
  kInitScalable = 6,    // ncclCommInitRankScalable
  kUnknown = 7,         // first seen in a call (created before tracing began)
};
inline constexpr uint8_t kMaxCommOrigin = 7;
std::string_view CommOriginName(CommOrigin origin);  // "ncclCommInitRank", ...

// TraceComm::flags
enum TraceCommFlag : uint8_t {
  kCommDestroyed = 1u << 0,
  kCommAborted = 1u << 1,
};
inline constexpr uint8_t kTraceKnownCommFlags = 0x3;

struct TraceComm {
  // Shared by every member of the communicator, in every process: a hash of the ncclUniqueId it
  // was made from; for a split, of the parent's id, the parent's split counter and the color.
  uint64_t id;
  uint64_t parent_id;  // split/shrink: the parent's id; else 0
  uint64_t handle;     // the ncclComm_t in this process (to tell communicators apart in messages)
  int32_t nranks;      // -1 with rank -1: never learned (the communicator was not ready)
  int32_t rank;        // this rank's rank in the communicator
  uint8_t origin;      // CommOrigin
  uint8_t flags;       // TraceCommFlag
  uint16_t reserved0;
  int32_t device;  // CUDA device, -1 when unknown
  uint64_t reserved1;
};
static_assert(sizeof(TraceComm) == 48);

enum class CallKind : uint8_t { kSend = 1, kRecv = 2 };

// TraceCall::flags
enum TraceCallFlag : uint8_t {
  kCallInGroup = 1u << 0,    // made between ncclGroupStart and ncclGroupEnd
  kCallPosted = 1u << 1,     // handed to NCCL (posted_as is its place in the unit's posting order)
  kCallCompleted = 1u << 2,  // t_complete is valid
  kCallGpuDelay = 1u << 3,   // its delay ran as a spin kernel on its stream
  kCallShuffled = 1u << 4,   // its unit was posted in another order than called
  kCallStopped = 1u << 5,    // the fault plan's kill: the rank stopped dead before this call
  kCallError = 1u << 6,      // NCCL returned `result` != ncclSuccess for it
};
inline constexpr uint8_t kTraceKnownCallFlags = 0x7F;
inline constexpr uint32_t kNotPosted = 0xFFFFFFFFu;

struct TraceCall {
  uint8_t kind;            // CallKind
  uint8_t dtype;           // ncclDataType_t
  uint8_t flags;           // TraceCallFlag
  uint8_t result;          // ncclResult_t, with kCallError
  uint32_t comm;           // index into the file's communicators
  int32_t peer;            // rank in the communicator
  uint32_t delay_us;       // injected before posting it
  uint64_t count;          // elements
  uint64_t stream;         // cudaStream_t
  uint64_t unit;           // the rank's unit counter
  uint32_t index_in_unit;  // its place in the unit in call order
  uint32_t posted_as;      // its place in the unit's posting order, kNotPosted if never posted
  uint64_t t_call;         // ns since the epoch: when the program made the call
  uint64_t t_complete;     // ns since the epoch, with kCallCompleted
};
static_assert(sizeof(TraceCall) == 64);

// NCCL's element types as ncclDataType_t numbers them (stable across NCCL 2.x).
inline constexpr int kNcclDataTypes = 12;
std::string_view NcclDataTypeName(uint8_t dtype);  // "float32", "bfloat16", ... "dtype 17"
int NcclDataTypeSize(uint8_t dtype);               // bytes per element, 0 when unknown

// A whole trace file, decoded.
struct Trace {
  std::string path;  // where it was read from (for messages)
  TraceHeader header{};
  std::vector<TraceComm> comms;
  std::vector<TraceCall> calls;

  int rank() const { return header.rank; }
  std::string host() const;
  bool ended_on_signal() const { return header.flags & kTraceWrittenOnSignal; }
};

// A header for a rank's trace with the constant fields filled in.
TraceHeader MakeTraceHeader(int rank, uint32_t pid, uint64_t epoch_realtime_ns,
                            std::string_view host);

// The trace files (*.pptrace, regular files) directly in `dir`, sorted; `ec` says why it could
// not be listed.
std::vector<std::string> TraceFilesIn(const std::string& dir, std::error_code& ec);

// Reads a trace strictly: magic, version, record sizes, every count against the file's size,
// every field's range, the unit and posting-order invariants the interposer keeps. Throws
// InputError ("PATH: error: call #12: ...") on anything else; never crashes on any input.
Trace ParseTrace(std::string_view bytes, std::string_view name);
Trace ReadTrace(const std::string& path);
// Every *.pptrace in `dir`, by rank. InputError when there is none, when one does not read, or
// when two claim the same rank.
std::vector<Trace> ReadTraceDirectory(const std::string& dir);

// The file's bytes: header (with the counts set from the vectors), communicators, calls.
std::string EncodeTrace(const Trace& trace);

// "rank3-pid4711.pptrace": the file name of a rank's trace. The process id keeps two processes
// that claim one rank (a mislabelled launch) from overwriting each other: the reader refuses the
// pair and names both.
std::string TraceFileName(int rank, uint32_t pid);

}  // namespace pipeproof
