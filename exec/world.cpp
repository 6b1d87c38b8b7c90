#include "exec/world.h"

#include <fmt/format.h>

#include "exec/mpi_world.h"
#include "schedule/errors.h"  // InputError
#ifdef PIPEPROOF_HAVE_CUDA
#include "exec/streams_transport.h"
#include "reference/cuda_device.h"
#endif
#ifdef PIPEPROOF_HAVE_NCCL_TRANSPORT
#include "exec/nccl_transport.h"
#endif

namespace pipeproof {
namespace {

std::string AlwaysAvailable(const WorldSpec&) { return ""; }
DeviceFactory HostDevices(DType) { return nullptr; }

std::unique_ptr<World> ThreadsWorld() { return MakeThreadWorld(); }
std::unique_ptr<World> MpiWorld() { return MakeMpiWorld(); }

#ifdef PIPEPROOF_HAVE_CUDA
std::unique_ptr<World> StreamsWorld() { return MakeStreamsWorld(); }
DeviceFactory OneGpu(DType dtype) {
  return [dtype](int) { return MakeCudaDevice(dtype); };
}
#else
std::unique_ptr<World> StreamsWorld() {
  throw InputError("--transport streams: this pipeproof was built without CUDA");
}
DeviceFactory OneGpu(DType) { return nullptr; }
#endif

// NCCL: one GPU per rank, ranks as MPI processes under mpirun, else as threads of this process.
#ifdef PIPEPROOF_HAVE_NCCL_TRANSPORT
std::string NcclUnavailable(const WorldSpec&) {
  // Threads mode is checked per rank, when the devices are made (the ranks are known then).
  const int gpus = ProbeCuda().devices;
  if (!UnderMpirun() || gpus >= LocalRanks()) return "";
  return fmt::format(
      "--transport nccl needs one GPU per rank: this node has {} GPU(s) for {} ranks, and NCCL "
      "refuses two ranks on one GPU (\"Duplicate GPU detected\"); on one GPU leave --transport "
      "out (the streams transport)",
      gpus, LocalRanks());
}
std::unique_ptr<World> NcclWorld() {
  if (!UnderMpirun()) return MakeNcclThreadWorld();
  return MakeMpiWorld(NcclOverMpi(), "nccl");
}
DeviceFactory GpuPerRank(DType dtype) {
  if (UnderMpirun()) {
    return [dtype](int) { return MakeCudaDevice(dtype, LocalGpu(ProbeCuda().devices)); };
  }
  return [dtype](int rank) {  // threads mode: rank r on GPU r
    const int gpus = ProbeCuda().devices;
    if (rank >= gpus) {
      throw InputError(fmt::format(
          "--transport nccl needs one GPU per rank: rank {} has none (this machine has {}); NCCL "
          "refuses two ranks on one GPU, so on one GPU leave --transport out (the streams "
          "transport)",
          rank, gpus));
    }
    return MakeCudaDevice(dtype, rank < 0 ? 0 : rank);
  };
}
#else
std::string NcclUnavailable(const WorldSpec&) {
  return "--transport nccl: this pipeproof was built without NCCL (nccl.h not found)";
}
std::unique_ptr<World> NcclWorld() {
  throw InputError("--transport nccl: this pipeproof was built without CUDA or NCCL");
}
DeviceFactory GpuPerRank(DType) { return nullptr; }
#endif

// Whether --device cuda can compute here: built with CUDA, and a usable GPU.
void CheckCudaUsable() {
#ifdef PIPEPROOF_HAVE_CUDA
  const CudaProbe probe = ProbeCuda();
  if (!probe.usable) throw InputError("--device cuda: " + probe.why);
#else
  throw InputError(
      "--device cuda: this pipeproof was built without CUDA (configure it where the CUDA "
      "toolkit is installed, with -DPIPEPROOF_CUDA=ON to insist)");
#endif
}

}  // namespace

const std::vector<TransportKind>& Transports() {
  static const std::vector<TransportKind> transports = {
      {.name = "threads", .device = "cpu",
       .help = "threads: ranks as threads of this process (with --device cuda: streams, on one GPU)",
       .other_device_hint = "",
       .unavailable = AlwaysAvailable, .make_world = ThreadsWorld, .make_devices = HostDevices},
      {.name = "streams", .device = "cuda",
       .help = "streams: ranks as threads on one GPU, messages as device copies",
       .other_device_hint = "",
       .unavailable = AlwaysAvailable, .make_world = StreamsWorld, .make_devices = OneGpu},
      {.name = "mpi", .device = "cpu",
       .help = "mpi: one rank per process, under mpirun -np RANKS",
       .other_device_hint =
           "--device cuda sends device memory: with one GPU per MPI process use --transport "
           "nccl; on one GPU leave --transport out (the streams transport)",
       .ranks_are_processes = true,
       .unavailable = AlwaysAvailable, .make_world = MpiWorld, .make_devices = HostDevices},
      {.name = "nccl", .device = "cuda",
       .help = "nccl (with --device cuda): one GPU per rank, ranks as processes under mpirun -np "
               "RANKS or else as threads",
       .other_device_hint = "",
       .ranks_are_processes = true,
       .unavailable = NcclUnavailable, .make_world = NcclWorld, .make_devices = GpuPerRank},
  };
  return transports;
}

const TransportKind& TransportOf(const WorldSpec& spec) {
  const std::string name =
      spec.device == "cuda" && spec.transport == "threads" ? "streams" : spec.transport;
  for (const TransportKind& t : Transports()) {
    if (t.name == name) return t;
  }
  throw InputError(fmt::format("unknown transport '{}' (known: {})", spec.transport,
                               fmt::join(TransportNames(), ", ")));
}

std::vector<std::string> TransportNames() {
  std::vector<std::string> names;
  for (const TransportKind& t : Transports()) names.push_back(t.name);
  return names;
}

void CheckWorldSpec(const WorldSpec& spec) {
  const TransportKind& transport = TransportOf(spec);
  CheckStreamsFitTransport(spec.streams, transport.name);
  if (spec.device == "cpu" && spec.dtype == "bf16")
    throw InputError("--dtype bf16 computes on the GPU: add --device cuda");
  if (spec.device == "cuda" && spec.dtype == "f64")
    throw InputError("--device cuda computes in f32 or bf16: add --dtype f32 or --dtype bf16");
  if (transport.device != spec.device) {
    if (!transport.other_device_hint.empty()) throw InputError(transport.other_device_hint);
    throw InputError(transport.device == "cuda"
                         ? fmt::format("--transport {} runs on GPUs: add --device cuda",
                                       transport.name)
                         : fmt::format("--transport {} runs on the CPU: leave --device cuda out",
                                       transport.name));
  }
  if (spec.device == "cuda") CheckCudaUsable();
  if (std::string why = transport.unavailable(spec); !why.empty()) throw InputError(why);
}

std::function<std::unique_ptr<World>()> WorldMaker(const WorldSpec& spec) {
  CheckWorldSpec(spec);
  return TransportOf(spec).make_world;
}

std::unique_ptr<World> MakeWorld(const WorldSpec& spec) { return WorldMaker(spec)(); }

DeviceFactory DevicesFor(const WorldSpec& spec) {
  return TransportOf(spec).make_devices(*DTypeFromName(spec.dtype));
}

}  // namespace pipeproof
