// The CUDA device: f32 and bf16 tensors in GPU memory, GEMMs by cuBLAS, the rest by the kernels of
// reference/cuda_kernels.h. Built only when CMake finds CUDA (PIPEPROOF_HAVE_CUDA).
//
// Streams. Each device object owns a compute stream, on which every kernel, copy, upload,
// download and poisoning fill is queued in call order, and a communication stream that the
// streams transport (exec/streams_transport.h) copies received messages on. Synchronize() waits
// for the compute stream; Upload and Download wait for their own copy.
//
// Determinism: exact mode compares a pipelined run with a sequential reference run on another
// device object, bit for bit, so every object must compute the same bits from the same inputs:
//   - Every object has its own cuBLAS handle, bound to its compute stream, with its own workspace
//     of a fixed size (cublasSetWorkspace, kWorkspaceBytes). cuBLAS is bit-reproducible for a
//     given handle configuration on one GPU model; a workspace shared between streams, or a
//     different workspace size, could let it pick another algorithm or split differently.
//   - f32 GEMMs use CUBLAS_COMPUTE_32F_PEDANTIC with CUBLAS_PEDANTIC_MATH: no TF32 or other
//     reduced-precision shortcuts, whatever NVIDIA_TF32_OVERRIDE says. bf16 GEMMs take bf16
//     operands and accumulate in f32 (CUBLAS_COMPUTE_32F) with
//     CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION, so split-K partial sums are not rounded to
//     bf16. Atomics are off (CUBLAS_ATOMICS_NOT_ALLOWED): no order-dependent accumulation.
//   - Every buffer comes from its own cudaMalloc (256-byte aligned): cuBLAS's choice of kernel can
//     depend on operand alignment, which therefore never varies.
//   - The loss is reduced by one block of a fixed shape (no atomics), the other kernels are
//     element-wise. cuBLAS's algorithm choice is decided by shape and handle settings, not by
//     load, so eight ranks sharing one GPU compute what one reference alone computes.
// Across GPU models or CUDA versions the bits may differ: compare runs on one machine.
//
// Memory: freed tensors go to a pool per size; with poisoning on, a freed buffer is filled with
// 0xFF bytes (a NaN in both f32 and bf16) on the compute stream before it can be handed out again.
// cuBLAS is loaded on first use (dlopen), so the pipeproof binary starts as fast without a GPU.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "reference/device.h"

namespace pipeproof {

// Whether this process can use a GPU; never throws.
struct CudaProbe {
  bool usable = false;
  int devices = 0;
  std::string name;  // device 0's name, when usable
  std::string why;   // when not usable: "no CUDA driver", "no GPU", ...
};
CudaProbe ProbeCuda();

class CudaDevice final : public Device {
 public:
  static constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // cuBLAS's advice for Hopper

  // dtype kF32 or kBF16 (InputError otherwise); InputError when there is no usable GPU `gpu`;
  // std::runtime_error on a CUDA or cuBLAS failure.
  CudaDevice(DType dtype, int gpu = 0);
  ~CudaDevice() override;

  std::string Name() const override;  // "cuda-f32"
  DType dtype() const override { return dtype_; }
  Tensor Allocate(int rows, int cols) override;
  void SetPoisonOnRelease(bool poison) override { poison_ = poison; }
  void Upload(std::span<const double> values, Tensor& out) override;
  HostTensor Download(const Tensor& t) override;
  void Zero(Tensor& t) override;
  void Copy(const Tensor& from, Tensor& to) override;
  void Synchronize() override;
  MemoryStats memory_stats() const override;

  void LinearForward(const Tensor& x, const Tensor& w, Tensor& y) override;
  void LinearInputGrad(const Tensor& gy, const Tensor& w, Tensor& gx) override;
  void LinearWeightGrad(const Tensor& gy, const Tensor& x, Tensor& gw) override;
  void Gelu(const Tensor& h, Tensor& a) override;
  void GeluBackward(const Tensor& h, const Tensor& ga, Tensor& gh) override;
  void MseLoss(const Tensor& y, const Tensor& label, Tensor& loss, Tensor& gy) override;
  void AddInPlace(Tensor& acc, const Tensor& t) override;
  void FlipBit(Tensor& t, int64_t element, int bit) override;

  int gpu() const { return gpu_; }
  cudaStream_t compute_stream() const { return compute_; }
  cudaStream_t comm_stream() const { return comm_; }
  // Makes this device's GPU current on the calling thread (CUDA's current device is per thread).
  void Bind() const;

 protected:
  void Release(void* data, size_t bytes) override;

 private:
  struct State;
  // m x n = op(a) [m x k] * op(b) [k x n], column-major, beta 0.
  void Gemm(bool trans_a, bool trans_b, int m, int n, int k, const void* a, int lda, const void* b,
            int ldb, void* c, int ldc);

  DType dtype_;
  int gpu_;
  bool poison_ = false;
  cudaStream_t compute_ = nullptr;
  cudaStream_t comm_ = nullptr;
  std::unique_ptr<State> state_;
};

std::unique_ptr<Device> MakeCudaDevice(DType dtype, int gpu = 0);

// The ranks' devices (`devices[r]` is rank r's) as the CUDA devices a GPU transport (`user`, for
// the message) needs; InputError when one is not.
std::vector<CudaDevice*> RequireCudaDevices(const std::vector<Device*>& devices,
                                            std::string_view user);

}  // namespace pipeproof
