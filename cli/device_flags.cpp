#include "cli/device_flags.h"

#include <fmt/format.h>

#include "exec/mpi_world.h"
#include "schedule/schedule.h"  // InputError
#ifdef PIPEPROOF_HAVE_CUDA
#include "exec/streams_transport.h"
#include "reference/cuda_device.h"
#endif
#ifdef PIPEPROOF_HAVE_NCCL_TRANSPORT
#include "exec/nccl_transport.h"
#endif

namespace pipeproof {

void CheckDeviceFlags(const std::string& device, const std::string& dtype,
                      const std::string& transport) {
  if (device == "cpu") {
    if (dtype == "bf16") throw InputError("--dtype bf16 computes on the GPU: add --device cuda");
    if (transport == "streams" || transport == "nccl") {
      throw InputError(fmt::format("--transport {} runs on GPUs: add --device cuda", transport));
    }
    return;
  }
  if (dtype == "f64")
    throw InputError("--device cuda computes in f32 or bf16: add --dtype f32 or --dtype bf16");
  if (transport == "mpi") {
    throw InputError(
        "--device cuda sends device memory: with one GPU per MPI process use --transport "
        "nccl; on one GPU leave --transport out (the streams transport)");
  }
#ifdef PIPEPROOF_HAVE_CUDA
  const CudaProbe probe = ProbeCuda();
  if (!probe.usable) throw InputError("--device cuda: " + probe.why);
  if (transport == "nccl") {
#ifdef PIPEPROOF_HAVE_NCCL_TRANSPORT
    // Threads mode is checked per rank, when the devices are made (the ranks are known then).
    if (UnderMpirun() && probe.devices < LocalRanks()) {
      throw InputError(fmt::format(
          "--transport nccl needs one GPU per rank: this node has {} GPU(s) for {} ranks, and NCCL "
          "refuses two ranks on one GPU (\"Duplicate GPU detected\"); on one GPU leave --transport "
          "out "
          "(the streams transport)",
          probe.devices, LocalRanks()));
    }
#else
    throw InputError("--transport nccl: this pipeproof was built without NCCL (nccl.h not found)");
#endif
  }
#else
  throw InputError(
      "--device cuda: this pipeproof was built without CUDA (configure it where the CUDA "
      "toolkit is installed, with -DPIPEPROOF_CUDA=ON to insist)");
#endif
}

DeviceFactory DeviceFactoryFor(const std::string& device, DType dtype,
                               const std::string& transport) {
#ifdef PIPEPROOF_HAVE_NCCL_TRANSPORT
  if (device == "cuda" && transport == "nccl" && UnderMpirun()) {
    return [dtype](int) { return MakeCudaDevice(dtype, LocalGpu(ProbeCuda().devices)); };
  }
  if (device == "cuda" && transport == "nccl") {  // threads mode: rank r on GPU r
    return [dtype](int rank) {
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
#endif
#ifdef PIPEPROOF_HAVE_CUDA
  if (device == "cuda") return [dtype](int) { return MakeCudaDevice(dtype); };
#endif
  return nullptr;
}

std::unique_ptr<World> NcclWorld() {
#ifdef PIPEPROOF_HAVE_NCCL_TRANSPORT
  if (!UnderMpirun()) return MakeNcclThreadWorld();
  return MakeMpiWorld(NcclOverMpi(), "nccl");
#else
  throw InputError("--transport nccl: this pipeproof was built without CUDA or NCCL");
#endif
}

std::function<std::unique_ptr<World>()> ThreadWorldFor(const std::string& device) {
#ifdef PIPEPROOF_HAVE_CUDA
  if (device == "cuda") return [] { return MakeStreamsWorld(); };
#endif
  return nullptr;
}

}  // namespace pipeproof
