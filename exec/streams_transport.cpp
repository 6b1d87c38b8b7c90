#include "exec/streams_transport.h"

#include <fmt/format.h>

#include <stdexcept>

#include "reference/cuda_device.h"
#include "reference/cuda_kernels.h"
#include "schedule/errors.h"  // InputError

namespace pipeproof {
namespace {

void Check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    throw std::runtime_error(fmt::format("streams transport: {}: {}", what, cudaGetErrorString(e)));
  }
}

// A copy queued on a communication stream, done when the event after it is.
class EventCopy final : public MessageCopier::Pending {
 public:
  EventCopy(int gpu, cudaEvent_t event) : gpu_(gpu), event_(event) {}
  ~EventCopy() override {
    cudaSetDevice(gpu_);
    cudaEventDestroy(event_);
  }

  bool Done(std::string& error) override {
    if (!done_) {
      cudaSetDevice(gpu_);
      const cudaError_t e = cudaEventQuery(event_);
      if (e == cudaErrorNotReady) return false;
      done_ = true;
      if (e != cudaSuccess) error_ = fmt::format("device copy failed: {}", cudaGetErrorString(e));
    }
    error = error_;
    return true;
  }

 private:
  int gpu_;
  cudaEvent_t event_;
  bool done_ = false;
  std::string error_;
};

class StreamsCopier final : public MessageCopier {
 public:
  explicit StreamsCopier(std::vector<CudaDevice*> devices) : devices_(std::move(devices)) {}

  std::unique_ptr<Pending> Start(int from, int to, void* dst, const void* src, size_t bytes,
                                 uint32_t delay_us) override {
    CudaDevice& receiver = *devices_.at(to);
    receiver.Bind();
    const cudaStream_t stream = receiver.comm_stream();
    if (delay_us)
      Check(cuda::LaunchSpin(uint64_t{delay_us} * 1000, stream), "delivery delay kernel");
    Check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
    cudaEvent_t event = nullptr;
    Check(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreate");
    auto copy = std::make_unique<EventCopy>(receiver.gpu(), event);
    Check(cudaEventRecord(event, stream), "cudaEventRecord");
    return copy;
  }

 private:
  std::vector<CudaDevice*> devices_;
};

}  // namespace

std::shared_ptr<MessageCopier> MakeStreamsCopier(const std::vector<Device*>& devices) {
  return std::make_shared<StreamsCopier>(RequireCudaDevices(devices, "the streams transport"));
}

std::unique_ptr<World> MakeStreamsWorld() {
  return MakeThreadWorld("streams", FabricEndpoints(&MakeStreamsCopier));
}

}  // namespace pipeproof
