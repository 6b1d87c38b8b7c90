#include "usercode/nccl_gpu.h"

#if defined(PIPEPROOF_INTERPOSER_GPU)

#include <dlfcn.h>

#include <mutex>
#include <type_traits>
#include <vector>

namespace pipeproof::interposer {
namespace {

// The driver API's types and the few calls used, as cuda.h declares them (CUresult is an int
// enum; the handles are pointers). Declared here so that building needs no CUDA headers.
using CUresult = int;
using CUcontext = void*;
using CUmodule = void*;
using CUfunction = void*;
using CUevent = void*;
using CUstream = void*;
constexpr CUresult kSuccess = 0;
constexpr CUresult kNotReady = 600;  // CUDA_ERROR_NOT_READY
constexpr unsigned kStreamNonBlocking = 1;
constexpr unsigned kEventDefault = 0;  // timing enabled

struct Driver {
  CUresult (*Init)(unsigned);
  CUresult (*DeviceGetCount)(int*);
  CUresult (*StreamGetCtx)(CUstream, CUcontext*);
  CUresult (*CtxPushCurrent)(CUcontext);
  CUresult (*CtxPopCurrent)(CUcontext*);
  CUresult (*ModuleLoadData)(CUmodule*, const void*);
  CUresult (*ModuleGetFunction)(CUfunction*, CUmodule, const char*);
  CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                           unsigned, CUstream, void**, void**);
  CUresult (*EventCreate)(CUevent*, unsigned);
  CUresult (*EventRecord)(CUevent, CUstream);
  CUresult (*EventQuery)(CUevent);
  CUresult (*EventSynchronize)(CUevent);
  CUresult (*EventElapsedTime)(float*, CUevent, CUevent);
  CUresult (*StreamCreate)(CUstream*, unsigned);
  CUresult (*StreamIsCapturing)(CUstream, int*);

  bool Load() {
    void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return false;
    auto get = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      return fn != nullptr;
    };
    return get(Init, "cuInit") && get(DeviceGetCount, "cuDeviceGetCount") &&
           get(StreamGetCtx, "cuStreamGetCtx") && get(CtxPushCurrent, "cuCtxPushCurrent_v2") &&
           get(CtxPopCurrent, "cuCtxPopCurrent_v2") && get(ModuleLoadData, "cuModuleLoadData") &&
           get(ModuleGetFunction, "cuModuleGetFunction") && get(LaunchKernel, "cuLaunchKernel") &&
           get(EventCreate, "cuEventCreate") && get(EventRecord, "cuEventRecord") &&
           get(EventQuery, "cuEventQuery") && get(EventSynchronize, "cuEventSynchronize") &&
           get(EventElapsedTime, "cuEventElapsedTime") && get(StreamCreate, "cuStreamCreate") &&
           get(StreamIsCapturing, "cuStreamIsCapturing");
  }
};

// The spin kernel, in PTX so that the driver compiles it for whatever GPU it runs on: it reads
// the global nanosecond timer until `ns` have passed.
constexpr char kSpinPtx[] = R"(
.version 6.0
.target sm_50
.address_size 64
.visible .entry pipeproof_spin(.param .u64 pipeproof_spin_ns)
{
  .reg .pred %p<2>;
  .reg .b64 %rd<5>;
  ld.param.u64 %rd1, [pipeproof_spin_ns];
  mov.u64 %rd2, %globaltimer;
$L_spin:
  mov.u64 %rd3, %globaltimer;
  sub.s64 %rd4, %rd3, %rd2;
  setp.lt.u64 %p1, %rd4, %rd1;
  @%p1 bra $L_spin;
  ret;
}
)";

// What each CUDA context needs: the loaded kernel, and a reference event whose completion was
// seen at a known host time, so that other events' times convert to the host clock.
struct ContextState {
  CUcontext context = nullptr;
  CUfunction spin = nullptr;
  CUevent reference = nullptr;
  uint64_t reference_ns = 0;
  std::vector<CUevent> free_events;
};

}  // namespace

struct Gpu::Impl {
  Driver cu{};
  uint64_t (*now_ns)() = nullptr;
  std::mutex mutex;
  std::vector<ContextState> contexts;

  // The state of `stream`'s context, set up on first use; null if that fails. Under `mutex`.
  ContextState* StateFor(CUstream stream) {
    CUcontext ctx = nullptr;
    if (cu.StreamGetCtx(stream, &ctx) != kSuccess || !ctx) return nullptr;
    for (ContextState& s : contexts) {
      if (s.context == ctx) return &s;
    }
    ContextState s;
    s.context = ctx;
    if (cu.CtxPushCurrent(ctx) != kSuccess) return nullptr;
    CUmodule module = nullptr;
    CUstream own = nullptr;
    bool ok = cu.ModuleLoadData(&module, kSpinPtx) == kSuccess &&
              cu.ModuleGetFunction(&s.spin, module, "pipeproof_spin") == kSuccess &&
              cu.StreamCreate(&own, kStreamNonBlocking) == kSuccess &&
              cu.EventCreate(&s.reference, kEventDefault) == kSuccess &&
              cu.EventRecord(s.reference, own) == kSuccess &&
              cu.EventSynchronize(s.reference) == kSuccess;
    s.reference_ns = now_ns();
    CUcontext popped;
    cu.CtxPopCurrent(&popped);
    if (!ok) return nullptr;
    contexts.push_back(s);
    return &contexts.back();
  }

  ContextState* Find(CUcontext ctx) {
    for (ContextState& s : contexts) {
      if (s.context == ctx) return &s;
    }
    return nullptr;
  }
};

Gpu* Gpu::Get(uint64_t (*now_ns)()) {
  static Gpu* gpu = [now_ns]() -> Gpu* {
    auto* impl = new Gpu::Impl;
    int devices = 0;
    if (!impl->cu.Load() || impl->cu.Init(0) != kSuccess ||
        impl->cu.DeviceGetCount(&devices) != kSuccess || devices == 0) {
      delete impl;
      return nullptr;
    }
    impl->now_ns = now_ns;
    auto* g = new Gpu;
    g->impl_ = impl;
    return g;
  }();
  return gpu;
}

bool Gpu::Capturing(void* stream) {
  int status = 0;
  return impl_->cu.StreamIsCapturing(stream, &status) != kSuccess || status != 0;
}

bool Gpu::Spin(void* stream, uint32_t us) {
  std::lock_guard lock(impl_->mutex);
  ContextState* s = impl_->StateFor(stream);
  if (!s || impl_->cu.CtxPushCurrent(s->context) != kSuccess) return false;
  uint64_t ns = uint64_t{us} * 1000;
  void* args[] = {&ns};
  const bool ok =
      impl_->cu.LaunchKernel(s->spin, 1, 1, 1, 1, 1, 1, 0, stream, args, nullptr) == kSuccess;
  CUcontext popped;
  impl_->cu.CtxPopCurrent(&popped);
  return ok;
}

bool Gpu::Record(void* stream, Event* event) {
  std::lock_guard lock(impl_->mutex);
  ContextState* s = impl_->StateFor(stream);
  if (!s || impl_->cu.CtxPushCurrent(s->context) != kSuccess) return false;
  CUevent e = nullptr;
  if (!s->free_events.empty()) {
    e = s->free_events.back();
    s->free_events.pop_back();
  } else if (impl_->cu.EventCreate(&e, kEventDefault) != kSuccess) {
    e = nullptr;
  }
  const bool ok = e && impl_->cu.EventRecord(e, stream) == kSuccess;
  CUcontext popped;
  impl_->cu.CtxPopCurrent(&popped);
  if (!ok) {
    if (e) s->free_events.push_back(e);
    return false;
  }
  *event = {e, s->context};
  return true;
}

Gpu::Poll Gpu::Query(const Event& event, uint64_t* t_ns) {
  std::lock_guard lock(impl_->mutex);
  ContextState* s = impl_->Find(event.context);
  if (!s) return Poll::kFailed;
  const CUresult r = impl_->cu.EventQuery(event.event);
  if (r == kNotReady) return Poll::kPending;
  if (r != kSuccess) return Poll::kFailed;
  float ms = 0;
  if (impl_->cu.EventElapsedTime(&ms, s->reference, event.event) != kSuccess) return Poll::kFailed;
  const double ns = static_cast<double>(ms) * 1e6;
  *t_ns = ns <= 0 ? s->reference_ns : s->reference_ns + static_cast<uint64_t>(ns);
  return Poll::kDone;
}

void Gpu::Release(const Event& event) {
  std::lock_guard lock(impl_->mutex);
  if (ContextState* s = impl_->Find(event.context)) s->free_events.push_back(event.event);
}

}  // namespace pipeproof::interposer

#else  // no GPU support in this build

namespace pipeproof::interposer {

Gpu* Gpu::Get(uint64_t (*)()) { return nullptr; }
bool Gpu::Spin(void*, uint32_t) { return false; }
bool Gpu::Capturing(void*) { return true; }
bool Gpu::Record(void*, Event*) { return false; }
Gpu::Poll Gpu::Query(const Event&, uint64_t*) { return Poll::kFailed; }
void Gpu::Release(const Event&) {}

}  // namespace pipeproof::interposer

#endif
