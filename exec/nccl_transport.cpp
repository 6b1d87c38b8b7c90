#include "exec/nccl_transport.h"

#include <fmt/format.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "reference/cuda_device.h"
#include "reference/cuda_kernels.h"
#include "reference/shared_library.h"
#include "schedule/errors.h"  // InputError

namespace pipeproof {
namespace {

static_assert(sizeof(ncclUniqueId) == sizeof(NcclId), "NcclId holds an ncclUniqueId");

// NCCL through dlopen: linked in, its relocations would slow every pipeproof command's start, as
// cuBLAS's would (reference/cuda_device.cpp). The pointer types come from NCCL's own header.
struct Nccl {
  decltype(&ncclGetUniqueId) get_unique_id = nullptr;
  decltype(&ncclCommInitRank) comm_init_rank = nullptr;
  decltype(&ncclCommInitAll) comm_init_all = nullptr;
  decltype(&ncclCommDestroy) comm_destroy = nullptr;
  decltype(&ncclCommAbort) comm_abort = nullptr;
  decltype(&ncclCommGetAsyncError) comm_get_async_error = nullptr;
  decltype(&ncclGroupStart) group_start = nullptr;
  decltype(&ncclGroupEnd) group_end = nullptr;
  decltype(&ncclSend) send = nullptr;
  decltype(&ncclRecv) recv = nullptr;
  decltype(&ncclGetErrorString) error_string = nullptr;

  static const Nccl& Get() {
    static const Nccl* nccl = Load();
    if (!nccl) {
      throw std::runtime_error(
          fmt::format("nccl transport: cannot load libnccl.so.{} ({}): set "
                      "LD_LIBRARY_PATH to NCCL's lib directory",
                      NCCL_MAJOR, PIPEPROOF_NCCL_DIR));
    }
    return *nccl;
  }

  void Check(ncclResult_t r, const char* what) const {
    if (r != ncclSuccess)
      throw std::runtime_error(fmt::format("nccl transport: {}: {}", what, error_string(r)));
  }

 private:
  static const Nccl* Load() {
    void* lib = OpenSharedLibrary(fmt::format("libnccl.so.{}", NCCL_MAJOR), PIPEPROOF_NCCL_DIR);
    if (!lib) return nullptr;
    auto n = std::make_unique<Nccl>();  // lives as long as the process, like the library
    const bool ok = BindSymbol(lib, n->get_unique_id, "ncclGetUniqueId") &&
                    BindSymbol(lib, n->comm_init_rank, "ncclCommInitRank") &&
                    BindSymbol(lib, n->comm_init_all, "ncclCommInitAll") &&
                    BindSymbol(lib, n->comm_destroy, "ncclCommDestroy") &&
                    BindSymbol(lib, n->comm_abort, "ncclCommAbort") &&
                    BindSymbol(lib, n->comm_get_async_error, "ncclCommGetAsyncError") &&
                    BindSymbol(lib, n->group_start, "ncclGroupStart") &&
                    BindSymbol(lib, n->group_end, "ncclGroupEnd") &&
                    BindSymbol(lib, n->send, "ncclSend") && BindSymbol(lib, n->recv, "ncclRecv") &&
                    BindSymbol(lib, n->error_string, "ncclGetErrorString");
    return ok ? n.release() : nullptr;
  }
};

void CheckCuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(fmt::format("nccl transport: {}: {}", what, cudaGetErrorString(e)));
}

// How often a unit waiting for its group checks on it.
constexpr int64_t kPollUs = 20;

// The communicators of NCCL's threads mode, made together by one thread (ncclCommInitAll) and
// destroyed together in one group: a destroy is collective among a node's communicators, so one
// thread destroying them one by one would wait for itself.
struct NcclClique {
  const Nccl& nccl;
  std::vector<ncclComm_t> comms;
  std::atomic<bool> aborted{false};

  ~NcclClique() {
    if (aborted) {
      for (ncclComm_t c : comms) nccl.comm_abort(c);  // local: frees kernels that wait forever
      return;
    }
    nccl.group_start();
    for (ncclComm_t c : comms) nccl.comm_destroy(c);
    nccl.group_end();
  }
};

class NcclTransport final : public Transport {
 public:
  // One process per rank: makes its own communicator (collective across the processes).
  NcclTransport(const NcclId& id, int rank, int size, CudaDevice& device, StopSignal& stop)
      : nccl_(Nccl::Get()), rank_(rank), size_(size), device_(device), stop_(stop) {
    device_.Bind();
    ncclUniqueId unique;
    std::memcpy(&unique, id.data(), sizeof unique);
    nccl_.Check(nccl_.comm_init_rank(&comm_, size, unique, rank), "ncclCommInitRank");
    CheckCuda(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreate");
  }

  // Threads mode: rank `rank`'s communicator of `clique`, which owns it.
  NcclTransport(std::shared_ptr<NcclClique> clique, int rank, CudaDevice& device, StopSignal& stop)
      : nccl_(clique->nccl),
        rank_(rank),
        size_(static_cast<int>(clique->comms.size())),
        device_(device),
        stop_(stop),
        comm_(clique->comms[rank]),
        clique_(std::move(clique)) {
    device_.Bind();
    CheckCuda(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreate");
  }

  ~NcclTransport() override {
    device_.Bind();
    if (clique_) {
      if (aborted_) clique_->aborted = true;
    } else if (comm_) {
      // A communicator left with work that can never finish (a stopped run) must be aborted: a
      // destroy would wait for it.
      aborted_ ? nccl_.comm_abort(comm_) : nccl_.comm_destroy(comm_);
    }
    if (done_) cudaEventDestroy(done_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string Name() const override { return "nccl"; }

  // One communicator per rank: the rank layout only (RunAndCompare refuses the others).
  UnitResult Connect(std::span<const int>) override {
    return {UnitResult::Status::kFailed,
            "the NCCL transport has one communicator per rank: no pair communicators to set up"};
  }

  UnitResult RunUnit(std::span<const CommOp> ops, UnitProgress& progress) override {
    if (aborted_) return {UnitResult::Status::kStopped, ""};
    try {
      return Run(ops, progress);
    } catch (const std::exception& e) {
      return {UnitResult::Status::kFailed, e.what()};
    }
  }

 private:
  UnitResult Run(std::span<const CommOp> ops, UnitProgress& progress) {
    uint32_t deliver_us = 0;
    for (const CommOp& op : ops) {
      if (op.peer < 0 || op.peer >= size_) {
        return {UnitResult::Status::kFailed, fmt::format("no rank {} to talk to", op.peer)};
      }
      if (op.post_delay_us) {
        progress.DelayUntil(Clock::now() + std::chrono::microseconds(op.post_delay_us));
        if (!stop_.SleepFor(op.post_delay_us)) return {UnitResult::Status::kStopped, ""};
      }
      if (!op.send) deliver_us = std::max(deliver_us, op.deliver_delay_us);
    }
    device_.Bind();
    const cudaStream_t stream = device_.comm_stream();
    if (deliver_us) {
      progress.DelayUntil(Clock::now() + std::chrono::microseconds(deliver_us));
      CheckCuda(cuda::LaunchSpin(uint64_t{deliver_us} * 1000, stream), "delivery delay kernel");
    }
    nccl_.Check(nccl_.group_start(), "ncclGroupStart");
    for (const CommOp& op : ops) {
      const ncclResult_t r = op.send
                                 ? nccl_.send(op.data, op.bytes, ncclUint8, op.peer, comm_, stream)
                                 : nccl_.recv(op.data, op.bytes, ncclUint8, op.peer, comm_, stream);
      if (r != ncclSuccess) {
        nccl_.group_end();
        nccl_.Check(r, op.send ? "ncclSend" : "ncclRecv");
      }
    }
    nccl_.Check(nccl_.group_end(), "ncclGroupEnd");
    for (auto& p : progress.ops) p.store(OpProgress::kPosted);
    CheckCuda(cudaEventRecord(done_, stream), "cudaEventRecord");
    while (true) {
      const cudaError_t e = cudaEventQuery(done_);
      if (e == cudaSuccess) break;
      if (e != cudaErrorNotReady) CheckCuda(e, "waiting for the group");
      ncclResult_t async = ncclSuccess;
      nccl_.Check(nccl_.comm_get_async_error(comm_, &async), "ncclCommGetAsyncError");
      if (async != ncclSuccess && async != ncclInProgress) nccl_.Check(async, "the group");
      if (!stop_.SleepFor(kPollUs)) {
        aborted_ = true;
        return {UnitResult::Status::kStopped, ""};
      }
    }
    for (auto& p : progress.ops) p.store(OpProgress::kComplete);
    return {};
  }

  const Nccl& nccl_;
  int rank_;
  int size_;
  CudaDevice& device_;
  StopSignal& stop_;
  ncclComm_t comm_ = nullptr;
  std::shared_ptr<NcclClique> clique_;  // threads mode
  cudaEvent_t done_ = nullptr;
  bool aborted_ = false;
};

int FirstSetInt(std::initializer_list<const char*> names, int fallback) {
  for (const char* name : names) {
    if (const char* v = std::getenv(name); v && *v) return std::atoi(v);
  }
  return fallback;
}

}  // namespace

NcclId NewNcclId() {
  const Nccl& nccl = Nccl::Get();
  ncclUniqueId unique;
  nccl.Check(nccl.get_unique_id(&unique), "ncclGetUniqueId");
  NcclId id;
  std::memcpy(id.data(), &unique, sizeof unique);
  return id;
}

std::unique_ptr<Transport> MakeNcclTransport(const NcclId& id, int rank, int size,
                                             CudaDevice& device, StopSignal& stop) {
  return std::make_unique<NcclTransport>(id, rank, size, device, stop);
}

std::vector<std::unique_ptr<Transport>> MakeNcclThreadTransports(
    const std::vector<CudaDevice*>& devices, StopSignal& stop) {
  std::vector<int> gpus;
  for (size_t r = 0; r < devices.size(); ++r) {
    const int gpu = devices[r]->gpu();
    for (size_t q = 0; q < r; ++q) {
      if (gpus[q] == gpu) {
        throw InputError(
            fmt::format("the NCCL transport needs one GPU per rank: ranks {} and {} "
                        "both have GPU {} (NCCL refuses two ranks on one GPU)",
                        q, r, gpu));
      }
    }
    gpus.push_back(gpu);
  }
  auto clique = std::make_shared<NcclClique>(Nccl::Get());
  clique->comms.resize(devices.size());
  clique->nccl.Check(
      clique->nccl.comm_init_all(clique->comms.data(), static_cast<int>(gpus.size()), gpus.data()),
      "ncclCommInitAll");
  std::vector<std::unique_ptr<Transport>> transports;
  for (size_t r = 0; r < devices.size(); ++r) {
    transports.push_back(
        std::make_unique<NcclTransport>(clique, static_cast<int>(r), *devices[r], stop));
  }
  return transports;
}

std::unique_ptr<World> MakeNcclThreadWorld() {
  return MakeThreadWorld("nccl", [](const std::vector<Device*>& devices, StopSignal& stop) {
    return MakeNcclThreadTransports(RequireCudaDevices(devices, "the NCCL transport"), stop);
  });
}

bool UnderMpirun() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"}) {
    if (const char* v = std::getenv(name); v && *v) return true;
  }
  return false;
}

MpiTransportFactory NcclOverMpi() {
  return [](const MpiRank& r, Device& device, StopSignal& stop) -> std::unique_ptr<Transport> {
    auto* cuda = dynamic_cast<CudaDevice*>(&device);
    if (!cuda)
      throw InputError("the NCCL transport runs every rank on the CUDA device (--device cuda)");
    NcclId id{};
    if (r.rank == 0) id = NewNcclId();
    r.broadcast(id.data(), id.size());
    return MakeNcclTransport(id, r.rank, r.size, *cuda, stop);
  };
}

int LocalGpu(int gpus) {
  const int local =
      FirstSetInt({"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}, 0);
  return gpus > 0 ? local % gpus : 0;
}

int LocalRanks() {
  return FirstSetInt({"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"}, 1);
}

}  // namespace pipeproof
