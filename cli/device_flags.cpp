#include "cli/device_flags.h"

#include "schedule/schedule.h"  // InputError
#ifdef PIPEPROOF_HAVE_CUDA
#include "exec/streams_transport.h"
#include "reference/cuda_device.h"
#endif

namespace pipeproof {

void CheckDeviceFlags(const std::string& device, const std::string& dtype, const std::string& transport) {
  if (device == "cpu") {
    if (dtype == "bf16") throw InputError("--dtype bf16 computes on the GPU: add --device cuda");
    if (transport == "streams") throw InputError("--transport streams runs on the GPU: add --device cuda");
    return;
  }
  if (dtype == "f64") throw InputError("--device cuda computes in f32 or bf16: add --dtype f32 or --dtype bf16");
  if (transport == "mpi") {
    throw InputError("--device cuda runs its ranks as threads on one GPU (the streams transport); it "
                     "does not go with --transport mpi");
  }
#ifdef PIPEPROOF_HAVE_CUDA
  const CudaProbe probe = ProbeCuda();
  if (!probe.usable) throw InputError("--device cuda: " + probe.why);
#else
  throw InputError("--device cuda: this pipeproof was built without CUDA (configure it where the CUDA "
                   "toolkit is installed, with -DPIPEPROOF_CUDA=ON to insist)");
#endif
}

DeviceFactory DeviceFactoryFor(const std::string& device, DType dtype) {
#ifdef PIPEPROOF_HAVE_CUDA
  if (device == "cuda") return [dtype](int) { return MakeCudaDevice(dtype); };
#endif
  return nullptr;
}

std::function<std::unique_ptr<World>()> ThreadWorldFor(const std::string& device) {
#ifdef PIPEPROOF_HAVE_CUDA
  if (device == "cuda") return [] { return MakeStreamsWorld(); };
#endif
  return nullptr;
}

}  // namespace pipeproof
