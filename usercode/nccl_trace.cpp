#include "usercode/nccl_trace.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "schedule/errors.h"  // InputError, kMaxRanks
#include "schedule/read_file.h"

namespace pipeproof {

std::string_view CommOriginName(CommOrigin origin) {
  switch (origin) {
    case CommOrigin::kInitRank:
      return "ncclCommInitRank";
    case CommOrigin::kInitRankConfig:
      return "ncclCommInitRankConfig";
    case CommOrigin::kInitAll:
      return "ncclCommInitAll";
    case CommOrigin::kSplit:
      return "ncclCommSplit";
    case CommOrigin::kShrink:
      return "ncclCommShrink";
    case CommOrigin::kInitScalable:
      return "ncclCommInitRankScalable";
    case CommOrigin::kUnknown:
      return "unknown origin";
  }
  return "?";
}

std::string_view NcclDataTypeName(uint8_t dtype) {
  static constexpr std::string_view kNames[kNcclDataTypes] = {
      "int8",    "uint8",   "int32",   "uint32",   "int64",      "uint64",
      "float16", "float32", "float64", "bfloat16", "float8e4m3", "float8e5m2"};
  if (dtype < kNcclDataTypes) return kNames[dtype];
  return "unknown dtype";
}

int NcclDataTypeSize(uint8_t dtype) {
  static constexpr int kSizes[kNcclDataTypes] = {1, 1, 4, 4, 8, 8, 2, 4, 8, 2, 1, 1};
  return dtype < kNcclDataTypes ? kSizes[dtype] : 0;
}

std::string Trace::host() const {
  return std::string(header.host, strnlen(header.host, sizeof header.host));
}

TraceHeader MakeTraceHeader(int rank, uint32_t pid, uint64_t epoch_realtime_ns,
                            std::string_view host) {
  TraceHeader h{};
  std::memcpy(h.magic, kTraceMagic, sizeof h.magic);
  h.version = kTraceVersion;
  h.header_bytes = sizeof(TraceHeader);
  h.comm_bytes = sizeof(TraceComm);
  h.call_bytes = sizeof(TraceCall);
  h.rank = rank;
  h.pid = pid;
  h.epoch_realtime_ns = epoch_realtime_ns;
  // Printable ASCII only: the reader refuses anything else.
  for (size_t i = 0; i < host.size() && i + 1 < sizeof h.host; ++i) {
    const char c = host[i];
    h.host[i] = c >= 0x20 && c < 0x7f ? c : '?';
  }
  return h;
}

std::string TraceFileName(int rank, uint32_t pid) {
  return fmt::format("rank{}-pid{}{}", rank, pid, kTraceFileSuffix);
}

std::string EncodeTrace(const Trace& trace) {
  TraceHeader h = trace.header;
  h.comm_count = static_cast<uint32_t>(trace.comms.size());
  h.call_count = trace.calls.size();
  std::string out(
      sizeof h + trace.comms.size() * sizeof(TraceComm) + trace.calls.size() * sizeof(TraceCall),
      '\0');
  char* p = out.data();
  std::memcpy(p, &h, sizeof h);
  p += sizeof h;
  if (!trace.comms.empty())
    std::memcpy(p, trace.comms.data(), trace.comms.size() * sizeof(TraceComm));
  p += trace.comms.size() * sizeof(TraceComm);
  if (!trace.calls.empty())
    std::memcpy(p, trace.calls.data(), trace.calls.size() * sizeof(TraceCall));
  return out;
}

namespace {

// Bounds far beyond any real run, so that a corrupt count is refused before it allocates.
constexpr uint64_t kMaxCalls = uint64_t{1} << 26;
constexpr uint32_t kMaxComms = 1u << 16;
constexpr int32_t kMaxCommRanks = 1 << 24;
constexpr uint64_t kMaxCount = uint64_t{1} << 48;
// The largest file those counts allow; anything larger is refused before it is read.
constexpr int64_t kMaxTraceBytes =
    sizeof(TraceHeader) + int64_t{kMaxComms} * sizeof(TraceComm) + kMaxCalls * sizeof(TraceCall);

// Decodes and checks one file; every refusal names where it is.
class TraceReader {
 public:
  TraceReader(std::string_view bytes, std::string_view name) : bytes_(bytes), name_(name) {}

  Trace Read() {
    Trace t;
    t.path = std::string(name_);
    t.header = Header();
    const size_t comms_at = sizeof(TraceHeader);
    const size_t calls_at = comms_at + size_t{t.header.comm_count} * sizeof(TraceComm);
    t.comms.resize(t.header.comm_count);
    if (!t.comms.empty())
      std::memcpy(t.comms.data(), bytes_.data() + comms_at, t.comms.size() * sizeof(TraceComm));
    t.calls.resize(t.header.call_count);
    if (!t.calls.empty())
      std::memcpy(t.calls.data(), bytes_.data() + calls_at, t.calls.size() * sizeof(TraceCall));
    for (size_t i = 0; i < t.comms.size(); ++i) CheckComm(t.comms, i);
    CheckCalls(t);
    return t;
  }

 private:
  [[noreturn]] void Fail(const std::string& what) const {
    throw InputError(what, std::string(name_));
  }

  TraceHeader Header() const {
    if (bytes_.size() < sizeof(TraceHeader)) {
      Fail(fmt::format("not a pipeproof NCCL trace: {} bytes, shorter than its {}-byte header",
                       bytes_.size(), sizeof(TraceHeader)));
    }
    TraceHeader h;
    std::memcpy(&h, bytes_.data(), sizeof h);
    if (std::memcmp(h.magic, kTraceMagic, sizeof h.magic) != 0) {
      Fail("not a pipeproof NCCL trace (the file does not start with \"PPNCCLTR\")");
    }
    if (h.version != kTraceVersion) {
      Fail(fmt::format("trace version {} is not known (this pipeproof reads version {})", h.version,
                       kTraceVersion));
    }
    if (h.header_bytes != sizeof(TraceHeader) || h.comm_bytes != sizeof(TraceComm) ||
        h.call_bytes != sizeof(TraceCall)) {
      Fail(fmt::format("record sizes {}/{}/{} differ from version 1's {}/{}/{}", h.header_bytes,
                       h.comm_bytes, h.call_bytes, sizeof(TraceHeader), sizeof(TraceComm),
                       sizeof(TraceCall)));
    }
    if (h.rank < 0 || h.rank >= kMaxRanks)
      Fail(fmt::format("rank {} is out of range 0..{}", h.rank, kMaxRanks - 1));
    if (h.comm_count > kMaxComms)
      Fail(fmt::format("{} communicators: more than {}", h.comm_count, kMaxComms));
    if (h.call_count > kMaxCalls)
      Fail(fmt::format("{} calls: more than {}", h.call_count, kMaxCalls));
    const uint64_t expected = sizeof(TraceHeader) + uint64_t{h.comm_count} * sizeof(TraceComm) +
                              h.call_count * sizeof(TraceCall);
    if (bytes_.size() != expected) {
      Fail(fmt::format(
          "the header announces {} communicators and {} calls ({} bytes), the file has {} bytes",
          h.comm_count, h.call_count, expected, bytes_.size()));
    }
    if (h.flags & ~kTraceKnownFlags)
      Fail(fmt::format("unknown header flags {:#x}", h.flags & ~kTraceKnownFlags));
    const bool on_signal = h.flags & kTraceWrittenOnSignal;
    if (on_signal != (h.end_signal != 0) || h.end_signal < 0 || h.end_signal > 64) {
      Fail(fmt::format("end signal {} does not fit the header's flags", h.end_signal));
    }
    if (((h.flags & kTraceCallsDropped) != 0) != (h.dropped_calls != 0)) {
      Fail(fmt::format("{} dropped calls do not fit the header's flags", h.dropped_calls));
    }
    if (h.reserved0 != 0) Fail("reserved header bytes are not zero");
    const size_t host_len = strnlen(h.host, sizeof h.host);
    if (host_len == sizeof h.host) Fail("the host name is not NUL-terminated");
    for (size_t i = 0; i < sizeof h.host; ++i) {
      const char c = h.host[i];
      if (i < host_len ? (c < 0x20 || c >= 0x7f) : c != 0)
        Fail("the host name holds bytes other than printable ASCII and NUL padding");
    }
    return h;
  }

  void CheckComm(const std::vector<TraceComm>& comms, size_t i) const {
    const TraceComm& c = comms[i];
    auto fail = [&](const std::string& what) {
      Fail(fmt::format("communicator #{}: {}", i, what));
    };
    if (c.id == 0) fail("id 0");
    for (size_t j = 0; j < i; ++j) {
      if (comms[j].id == c.id) fail(fmt::format("the same id {:#x} as communicator #{}", c.id, j));
    }
    if (c.origin == 0 || c.origin > kMaxCommOrigin)
      fail(fmt::format("origin {} is not known", c.origin));
    const auto origin = static_cast<CommOrigin>(c.origin);
    const bool child = origin == CommOrigin::kSplit || origin == CommOrigin::kShrink;
    if (child != (c.parent_id != 0))
      fail("a parent id goes with ncclCommSplit/ncclCommShrink, and only with them");
    if (c.nranks == -1 || c.rank == -1) {
      if (c.nranks != -1 || c.rank != -1)
        fail(fmt::format("rank {} of {} ranks", c.rank, c.nranks));
    } else if (c.nranks < 1 || c.nranks > kMaxCommRanks || c.rank < 0 || c.rank >= c.nranks) {
      fail(fmt::format("rank {} of {} ranks", c.rank, c.nranks));
    }
    if (c.flags & ~kTraceKnownCommFlags) fail(fmt::format("unknown flags {:#x}", c.flags));
    if (c.device < -1) fail(fmt::format("device {}", c.device));
    if (c.reserved0 != 0 || c.reserved1 != 0) fail("reserved bytes are not zero");
  }

  struct UnitSeen {
    uint32_t size = 0;
    bool in_group = false;
    std::set<uint32_t> posted;
  };

  void CheckCalls(const Trace& t) const {
    std::vector<UnitSeen> units;  // by unit id; ids appear in order 0, 1, 2, ...
    uint64_t last_t_call = 0;
    for (size_t i = 0; i < t.calls.size(); ++i) {
      const TraceCall& c = t.calls[i];
      auto fail = [&](const std::string& what) { Fail(fmt::format("call #{}: {}", i, what)); };
      if (c.kind != static_cast<uint8_t>(CallKind::kSend) &&
          c.kind != static_cast<uint8_t>(CallKind::kRecv)) {
        fail(fmt::format("kind {} is neither send (1) nor receive (2)", c.kind));
      }
      if (c.dtype >= 32) fail(fmt::format("dtype {} is not an NCCL data type", c.dtype));
      if (c.flags & ~kTraceKnownCallFlags) fail(fmt::format("unknown flags {:#x}", c.flags));
      if (((c.flags & kCallError) != 0) != (c.result != 0))
        fail(fmt::format("result {} does not fit its error flag", c.result));
      if (c.comm >= t.comms.size())
        fail(fmt::format("communicator #{} of {}", c.comm, t.comms.size()));
      const TraceComm& comm = t.comms[c.comm];
      if (c.peer < 0 || (comm.nranks > 0 && c.peer >= comm.nranks)) {
        fail(fmt::format("peer {} is not a rank of communicator #{} ({} ranks)", c.peer, c.comm,
                         comm.nranks));
      }
      if (c.count > kMaxCount) fail(fmt::format("count {} is beyond any buffer", c.count));
      if (c.t_call < last_t_call) fail("made before the call recorded ahead of it");
      last_t_call = c.t_call;
      // Units: a new one gets the next id; a unit's calls number 0, 1, 2, ... in call order.
      if (c.unit > units.size()) fail(fmt::format("unit {} skips unit {}", c.unit, units.size()));
      const bool in_group = c.flags & kCallInGroup;
      if (c.unit == units.size()) {
        units.push_back({0, in_group, {}});
      } else if (units[c.unit].in_group != in_group || !in_group) {
        fail(fmt::format(
            "joins unit {}, which {}", c.unit,
            units[c.unit].in_group ? "is a group and it is not in one" : "is a lone call"));
      }
      UnitSeen& u = units[c.unit];
      if (c.index_in_unit != u.size)
        fail(fmt::format("index {} in unit {}; expected {}", c.index_in_unit, c.unit, u.size));
      ++u.size;
      const bool posted = c.flags & kCallPosted;
      if (posted == (c.posted_as == kNotPosted))
        fail("its posting place does not fit its posted flag");
      if (posted && !u.posted.insert(c.posted_as).second)
        fail(fmt::format("posted in place {} of unit {} twice", c.posted_as, c.unit));
      const bool completed = c.flags & kCallCompleted;
      if (completed && !posted) fail("completed without being posted");
      if (completed ? c.t_complete < c.t_call : c.t_complete != 0)
        fail("its completion time does not fit its call time and flags");
      if ((c.flags & kCallStopped) && (posted || i + 1 != t.calls.size()))
        fail("the rank stopped dead here, yet the call was posted or more calls follow");
    }
    for (size_t u = 0; u < units.size(); ++u) {
      for (uint32_t place : units[u].posted) {
        if (place >= units[u].size)
          Fail(fmt::format("unit {}: posted in place {} of its {} calls", u, place, units[u].size));
      }
    }
  }

  std::string_view bytes_;
  std::string_view name_;
};

}  // namespace

Trace ParseTrace(std::string_view bytes, std::string_view name) {
  return TraceReader(bytes, name).Read();
}

Trace ReadTrace(const std::string& path) {
  return ParseTrace(ReadFileBounded(path, kMaxTraceBytes, "trace"), path);
}

std::vector<std::string> TraceFilesIn(const std::string& dir, std::error_code& ec) {
  std::vector<std::string> paths;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.is_regular_file() && entry.path().string().ends_with(kTraceFileSuffix))
      paths.push_back(entry.path().string());
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

std::vector<Trace> ReadTraceDirectory(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) throw InputError("not a directory of traces", dir);
  const std::vector<std::string> paths = TraceFilesIn(dir, ec);
  if (ec) throw InputError(fmt::format("cannot list the directory: {}", ec.message()), dir);
  if (paths.empty()) {
    throw InputError(
        fmt::format("no *{} files: was the program run under `pipeproof inject --trace-dir {}`?",
                    kTraceFileSuffix, dir),
        dir);
  }
  std::vector<Trace> traces;
  std::map<int, std::string> by_rank;
  for (const std::string& p : paths) {
    Trace t = ReadTrace(p);
    if (auto [it, fresh] = by_rank.emplace(t.rank(), p); !fresh) {
      throw InputError(
          fmt::format("{} and {} both hold rank {}: two processes claimed one rank (set "
                      "PIPEPROOF_RANK, or RANK as torchrun does, for each process), or "
                      "traces of two runs share the directory",
                      it->second, p, t.rank()),
          dir);
    }
    traces.push_back(std::move(t));
  }
  std::sort(traces.begin(), traces.end(),
            [](const Trace& a, const Trace& b) { return a.rank() < b.rank(); });
  return traces;
}

}  // namespace pipeproof
