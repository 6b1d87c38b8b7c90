// Where the stage model's arithmetic runs. The sequential reference and every executor rank run
// the same Device kernels, so in exact mode a difference can only come from the schedule's
// execution (order, communication, buffer lifetimes), never from the arithmetic.
//
// Implementations: CpuDevice (f64, f32; reference/cpu_device.h) and, built with CUDA only,
// CudaDevice (f32, bf16; reference/cuda_device.h), whose tensors live in GPU memory: its kernels
// queue on the device's compute stream, Synchronize() waits for them, and Download() copies back
// to the host.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "reference/dtype.h"

namespace pipeproof {

class Device;

// A rows x cols row-major matrix in a device's memory. Move-only: destroying it hands the memory
// back to its device right away, which may poison it (fill it with NaN) and reuse it; that is
// how a buffer released too early shows up as a wrong result rather than going unnoticed.
class Tensor {
 public:
  Tensor() = default;
  Tensor(Device* device, void* data, int rows, int cols, DType dtype)
      : device_(device), data_(data), rows_(rows), cols_(cols), dtype_(dtype) {}
  Tensor(Tensor&& other) noexcept { *this = std::move(other); }
  Tensor& operator=(Tensor&& other) noexcept;
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;
  ~Tensor() { Reset(); }

  void Reset();  // releases the memory now
  bool empty() const { return data_ == nullptr; }
  void* data() { return data_; }
  const void* data() const { return data_; }
  int rows() const { return rows_; }
  int cols() const { return cols_; }
  DType dtype() const { return dtype_; }
  int64_t size() const { return int64_t{rows_} * cols_; }
  size_t bytes() const { return static_cast<size_t>(size()) * DTypeSize(dtype_); }
  Device* device() const { return device_; }

 private:
  Device* device_ = nullptr;
  void* data_ = nullptr;
  int rows_ = 0;
  int cols_ = 0;
  DType dtype_ = DType::kF64;
};

// Live and peak bytes held by a device's tensors (pooled memory not counted as live).
struct MemoryStats {
  int64_t live_bytes = 0;
  int64_t peak_bytes = 0;
  int64_t allocations = 0;  // Allocate calls
  int64_t reuses = 0;       // of which served from released memory
  friend bool operator==(const MemoryStats&, const MemoryStats&) = default;
};

class Device {
 public:
  virtual ~Device() = default;
  virtual std::string Name() const = 0;  // "cpu-f64"
  virtual DType dtype() const = 0;

  // Memory. Allocate's contents are unspecified (NaN when poisoning is on and the buffer is
  // reused). Poisoning fills every released buffer with NaN.
  virtual Tensor Allocate(int rows, int cols) = 0;
  virtual void SetPoisonOnRelease(bool poison) = 0;
  virtual void Upload(std::span<const double> values, Tensor& out) = 0;  // rounded to dtype()
  virtual HostTensor Download(const Tensor& t) = 0;                      // exact bits
  virtual void Zero(Tensor& t) = 0;
  virtual void Copy(const Tensor& from, Tensor& to) = 0;
  // Waits until every kernel queued so far has finished (a no-op on the CPU).
  virtual void Synchronize() {}
  virtual MemoryStats memory_stats() const = 0;

  // The stage model's kernels. Shapes: x [n, in], w [out, in] (PyTorch's Linear layout).
  virtual void LinearForward(const Tensor& x, const Tensor& w, Tensor& y) = 0;      // y = x w^T
  virtual void LinearInputGrad(const Tensor& gy, const Tensor& w, Tensor& gx) = 0;  // gx = gy w
  virtual void LinearWeightGrad(const Tensor& gy, const Tensor& x, Tensor& gw) = 0; // gw = gy^T x
  virtual void Gelu(const Tensor& h, Tensor& a) = 0;                                // erf form
  virtual void GeluBackward(const Tensor& h, const Tensor& ga, Tensor& gh) = 0;    // ga * gelu'(h)
  // loss [1, 1] = mean((y - label)^2); gy = d loss / d y = 2 (y - label) / numel.
  virtual void MseLoss(const Tensor& y, const Tensor& label, Tensor& loss, Tensor& gy) = 0;
  virtual void AddInPlace(Tensor& acc, const Tensor& t) = 0;  // acc += t

  // Negative control: flips one bit of one element (bit 0 = least significant).
  virtual void FlipBit(Tensor& t, int64_t element, int bit) = 0;

 protected:
  friend class Tensor;
  virtual void Release(void* data, size_t bytes) = 0;
};

inline Tensor& Tensor::operator=(Tensor&& other) noexcept {
  if (this != &other) {
    Reset();
    device_ = other.device_;
    data_ = other.data_;
    rows_ = other.rows_;
    cols_ = other.cols_;
    dtype_ = other.dtype_;
    other.device_ = nullptr;
    other.data_ = nullptr;
  }
  return *this;
}

inline void Tensor::Reset() {
  if (data_ && device_) device_->Release(data_, bytes());
  data_ = nullptr;
  device_ = nullptr;
}

}  // namespace pipeproof
