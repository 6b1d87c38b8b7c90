// A program over the real NCCL on one GPU, for the GPU tests of the interposer: one rank sends to
// itself in groups (ncclSend + ncclRecv to rank 0), as a pipeline stage would to a neighbour, and
// checks every byte that arrives. Device memory and streams through the CUDA driver API, loaded at
// run time, so that building it needs only <nccl.h>.
//   nccl_gpu_program [ITERATIONS]
// Exit status: 0 all data arrived intact, 1 a mismatch, 3 a CUDA or NCCL error, 77 no GPU here.

#include <dlfcn.h>
#include <nccl.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

using CUresult = int;
using CUdevice = int;
using CUcontext = void*;
using CUdeviceptr = unsigned long long;

struct Driver {
  CUresult (*Init)(unsigned);
  CUresult (*DeviceGetCount)(int*);
  CUresult (*PrimaryCtxRetain)(CUcontext*, CUdevice);
  CUresult (*CtxSetCurrent)(CUcontext);
  CUresult (*StreamCreate)(cudaStream_t*, unsigned);
  CUresult (*StreamSynchronize)(cudaStream_t);
  CUresult (*MemAlloc)(CUdeviceptr*, size_t);
  CUresult (*MemcpyHtoD)(CUdeviceptr, const void*, size_t);
  CUresult (*MemcpyDtoH)(void*, CUdeviceptr, size_t);

  bool Load() {
    void* lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (!lib) return false;
    auto get = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      return fn != nullptr;
    };
    return get(Init, "cuInit") && get(DeviceGetCount, "cuDeviceGetCount") &&
           get(PrimaryCtxRetain, "cuDevicePrimaryCtxRetain") &&
           get(CtxSetCurrent, "cuCtxSetCurrent") && get(StreamCreate, "cuStreamCreate") &&
           get(StreamSynchronize, "cuStreamSynchronize") && get(MemAlloc, "cuMemAlloc_v2") &&
           get(MemcpyHtoD, "cuMemcpyHtoD_v2") && get(MemcpyDtoH, "cuMemcpyDtoH_v2");
  }
};

void Cu(CUresult r, const char* what) {
  if (r != 0) {
    std::fprintf(stderr, "nccl_gpu_program: %s failed: CUDA error %d\n", what, r);
    std::exit(3);
  }
}

void Nccl(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) {
    std::fprintf(stderr, "nccl_gpu_program: %s failed: %s\n", what, ncclGetErrorString(r));
    std::exit(3);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 4;
  Driver cu{};
  int devices = 0;
  if (!cu.Load() || cu.Init(0) != 0 || cu.DeviceGetCount(&devices) != 0 || devices == 0) {
    std::fprintf(stderr, "nccl_gpu_program: no GPU here\n");
    return 77;
  }
  CUcontext ctx = nullptr;
  Cu(cu.PrimaryCtxRetain(&ctx, 0), "cuDevicePrimaryCtxRetain");
  Cu(cu.CtxSetCurrent(ctx), "cuCtxSetCurrent");
  cudaStream_t stream = nullptr;
  Cu(cu.StreamCreate(&stream, 1), "cuStreamCreate");
  ncclUniqueId id;
  Nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  ncclComm_t comm = nullptr;
  Nccl(ncclCommInitRank(&comm, 1, id, 0), "ncclCommInitRank");

  int mismatches = 0;
  for (int it = 0; it < iterations; ++it) {
    const size_t n = 1024 + 256 * it;
    std::vector<float> host(n), back(n, -1.0f);
    for (size_t i = 0; i < n; ++i) host[i] = static_cast<float>(it * 100000 + i);
    CUdeviceptr send = 0, recv = 0;
    Cu(cu.MemAlloc(&send, n * 4), "cuMemAlloc");
    Cu(cu.MemAlloc(&recv, n * 4), "cuMemAlloc");
    Cu(cu.MemcpyHtoD(send, host.data(), n * 4), "cuMemcpyHtoD");
    Nccl(ncclGroupStart(), "ncclGroupStart");
    Nccl(ncclSend(reinterpret_cast<const void*>(send), n, ncclFloat32, 0, comm, stream),
         "ncclSend");
    Nccl(ncclRecv(reinterpret_cast<void*>(recv), n, ncclFloat32, 0, comm, stream), "ncclRecv");
    Nccl(ncclGroupEnd(), "ncclGroupEnd");
    Cu(cu.StreamSynchronize(stream), "cuStreamSynchronize");
    Cu(cu.MemcpyDtoH(back.data(), recv, n * 4), "cuMemcpyDtoH");
    mismatches += std::memcmp(back.data(), host.data(), n * 4) != 0;
  }
  Nccl(ncclCommDestroy(comm), "ncclCommDestroy");
  std::printf("%d of %d transfers intact\n", iterations - mismatches, iterations);
  return mismatches ? 1 : 0;
}
