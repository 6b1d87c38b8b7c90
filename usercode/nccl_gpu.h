// The GPU side of the NCCL interposer: spin kernels that delay a stream by a set time, and CUDA
// events that say when a stream got past a call. Through the CUDA driver API, loaded at run time
// (libcuda.so.1): the interposer needs no CUDA to build, brings no CUDA runtime of its own into
// the program (whose runtime, PyTorch's say, would then be one of two), and works with whatever
// CUDA version the program uses. Where the driver or a device is missing (cuInit or
// cuDeviceGetCount fails), Get() returns null and the interposer sleeps on the host and takes
// host timestamps instead. Built only when the build has CUDA enabled (PIPEPROOF_CUDA not OFF);
// otherwise Get() always returns null.
#pragma once

#include <cstdint>

namespace pipeproof::interposer {

class Gpu {
 public:
  // The process's GPU support, or null where CUDA cannot be used. `now_ns` is the clock that
  // event times are converted to. Thread-safe; decided once.
  static Gpu* Get(uint64_t (*now_ns)());

  // Queues a kernel on `stream` that spins for `us` microseconds of GPU time (%globaltimer).
  bool Spin(void* stream, uint32_t us);
  // True while `stream` is being captured into a CUDA graph: nothing may be added to it then.
  bool Capturing(void* stream);

  struct Event {
    void* event = nullptr;
    void* context = nullptr;
  };
  // Records an event on `stream` (taken from a pool).
  bool Record(void* stream, Event* event);
  enum class Poll { kDone, kPending, kFailed };
  // kDone: the stream passed the event at *t_ns (on the now_ns clock, calibrated to ~10 us).
  Poll Query(const Event& event, uint64_t* t_ns);
  void Release(const Event& event);

 private:
  Gpu() = default;
  struct Impl;
  Impl* impl_ = nullptr;
};

}  // namespace pipeproof::interposer
