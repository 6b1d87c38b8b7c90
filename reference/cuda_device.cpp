#include "reference/cuda_device.h"

#include <cublas_v2.h>
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "reference/cuda_kernels.h"
#include "reference/shared_library.h"
#include "schedule/errors.h"  // InputError

namespace pipeproof {
namespace {

void Check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    throw std::runtime_error(fmt::format("cuda device: {}: {}", what, cudaGetErrorString(e)));
  }
}

// cuBLAS, opened on first use (reference/shared_library.h): linked in, it cost every pipeproof
// command about 70 ms at start-up. The pointer types come from cuBLAS's own header.
struct Cublas {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  decltype(&cublasSetWorkspace_v2) set_workspace = nullptr;
  decltype(&cublasSetMathMode) set_math_mode = nullptr;
  decltype(&cublasSetAtomicsMode) set_atomics_mode = nullptr;
  // The exported one; C++ also sees an inline overload taking a cudaDataType compute type.
  using GemmEx = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                                    int, const void*, const void*, cudaDataType, int, const void*,
                                    cudaDataType, int, const void*, void*, cudaDataType, int,
                                    cublasComputeType_t, cublasGemmAlgo_t);
  GemmEx gemm_ex = nullptr;
  static_assert(sizeof(static_cast<GemmEx>(&cublasGemmEx)) > 0, "GemmEx matches cuBLAS's header");
  decltype(&cublasGetStatusString) status_string = nullptr;

  // Loaded once; throws when libcublas cannot be found.
  static const Cublas& Get() {
    static const Cublas* cublas = Load();
    if (!cublas) {
      throw std::runtime_error(
          fmt::format("cuda device: cannot load libcublas.so.{} ({}): set "
                      "LD_LIBRARY_PATH to the CUDA toolkit's lib directory",
                      CUBLAS_VER_MAJOR, PIPEPROOF_CUBLAS_DIR));
    }
    return *cublas;
  }

  void Check(cublasStatus_t s, const char* what) const {
    if (s != CUBLAS_STATUS_SUCCESS) {
      throw std::runtime_error(fmt::format("cuda device: {}: {}", what, status_string(s)));
    }
  }

 private:
  static const Cublas* Load() {
    void* lib =
        OpenSharedLibrary(fmt::format("libcublas.so.{}", CUBLAS_VER_MAJOR), PIPEPROOF_CUBLAS_DIR);
    if (!lib) return nullptr;
    auto c = std::make_unique<Cublas>();  // lives as long as the process, like the library
    const bool ok = BindSymbol(lib, c->create, "cublasCreate_v2") &&
                    BindSymbol(lib, c->destroy, "cublasDestroy_v2") &&
                    BindSymbol(lib, c->set_stream, "cublasSetStream_v2") &&
                    BindSymbol(lib, c->set_workspace, "cublasSetWorkspace_v2") &&
                    BindSymbol(lib, c->set_math_mode, "cublasSetMathMode") &&
                    BindSymbol(lib, c->set_atomics_mode, "cublasSetAtomicsMode") &&
                    BindSymbol(lib, c->gemm_ex, "cublasGemmEx") &&
                    BindSymbol(lib, c->status_string, "cublasGetStatusString");
    return ok ? c.release() : nullptr;
  }
};

cuda::Elem ElemOf(DType dtype) {
  return dtype == DType::kF32 ? cuda::Elem::kF32 : cuda::Elem::kBF16;
}

void RequireShape(bool ok, const char* kernel) {
  if (!ok) throw std::logic_error(fmt::format("cuda device: shape mismatch in {}", kernel));
}

}  // namespace

CudaProbe ProbeCuda() {
  CudaProbe p;
  const cudaError_t e = cudaGetDeviceCount(&p.devices);
  if (e != cudaSuccess) {
    p.devices = 0;
    p.why = fmt::format("no usable GPU: {} ({})", cudaGetErrorString(e), cudaGetErrorName(e));
    return p;
  }
  if (p.devices == 0) {
    p.why = "no usable GPU: the CUDA driver sees no device";
    return p;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) p.name = prop.name;
  p.usable = true;
  return p;
}

struct CudaDevice::State {
  cublasHandle_t handle = nullptr;
  void* workspace = nullptr;
  mutable std::mutex mutex;  // the pool: a rank's compute and communication threads both free
  std::map<size_t, std::vector<void*>> free;
  MemoryStats stats;
};

CudaDevice::CudaDevice(DType dtype, int gpu)
    : dtype_(dtype), gpu_(gpu), state_(std::make_unique<State>()) {
  if (dtype != DType::kF32 && dtype != DType::kBF16) {
    throw InputError(
        fmt::format("the CUDA device computes in f32 or bf16, not {}", DTypeName(dtype)));
  }
  const CudaProbe probe = ProbeCuda();
  if (!probe.usable) throw InputError(probe.why);
  if (gpu < 0 || gpu >= probe.devices) {
    throw InputError(fmt::format("no GPU {}: this machine has {}", gpu, probe.devices));
  }
  const Cublas& blas = Cublas::Get();
  Bind();
  // Non-blocking: the legacy default stream, which other code may use, never orders our work.
  Check(cudaStreamCreateWithFlags(&compute_, cudaStreamNonBlocking), "cudaStreamCreate");
  Check(cudaStreamCreateWithFlags(&comm_, cudaStreamNonBlocking), "cudaStreamCreate");
  Check(cudaMalloc(&state_->workspace, kWorkspaceBytes), "cudaMalloc (cuBLAS workspace)");
  blas.Check(blas.create(&state_->handle), "cublasCreate");
  blas.Check(blas.set_stream(state_->handle, compute_), "cublasSetStream");
  blas.Check(blas.set_workspace(state_->handle, state_->workspace, kWorkspaceBytes),
             "cublasSetWorkspace");
  const cublasMath_t math =
      dtype == DType::kF32
          ? CUBLAS_PEDANTIC_MATH
          : static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH |
                                      CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION);
  blas.Check(blas.set_math_mode(state_->handle, math), "cublasSetMathMode");
  blas.Check(blas.set_atomics_mode(state_->handle, CUBLAS_ATOMICS_NOT_ALLOWED),
             "cublasSetAtomicsMode");
}

CudaDevice::~CudaDevice() {
  // Never throws: errors here can only be reported by a crash, and the work is done.
  cudaSetDevice(gpu_);
  if (compute_) cudaStreamSynchronize(compute_);
  if (comm_) cudaStreamSynchronize(comm_);
  if (state_->handle) Cublas::Get().destroy(state_->handle);
  if (state_->workspace) cudaFree(state_->workspace);
  for (auto& [bytes, blocks] : state_->free) {
    for (void* p : blocks) cudaFree(p);
  }
  if (compute_) cudaStreamDestroy(compute_);
  if (comm_) cudaStreamDestroy(comm_);
}

void CudaDevice::Bind() const { Check(cudaSetDevice(gpu_), "cudaSetDevice"); }

std::string CudaDevice::Name() const { return fmt::format("cuda-{}", DTypeName(dtype_)); }

Tensor CudaDevice::Allocate(int rows, int cols) {
  const size_t bytes = static_cast<size_t>(int64_t{rows} * cols) * DTypeSize(dtype_);
  void* data = nullptr;
  {
    std::lock_guard lock(state_->mutex);
    ++state_->stats.allocations;
    auto it = state_->free.find(bytes);
    if (it != state_->free.end() && !it->second.empty()) {
      data = it->second.back();
      it->second.pop_back();
      ++state_->stats.reuses;
    }
    state_->stats.live_bytes += static_cast<int64_t>(bytes);
    state_->stats.peak_bytes = std::max(state_->stats.peak_bytes, state_->stats.live_bytes);
  }
  if (!data) {
    Bind();
    const cudaError_t e = cudaMalloc(&data, std::max<size_t>(bytes, 1));
    if (e != cudaSuccess) {
      std::lock_guard lock(state_->mutex);
      state_->stats.live_bytes -= static_cast<int64_t>(bytes);
      Check(e, "cudaMalloc");
    }
  }
  return Tensor(this, data, rows, cols, dtype_);
}

void CudaDevice::Release(void* data, size_t bytes) {
  // Queued before the buffer goes back to the pool, so whoever takes it next is behind the fill on
  // the compute stream. Called from destructors: errors cannot be thrown, and a failed fill only
  // weakens the check.
  if (poison_ && bytes > 0) {
    cudaSetDevice(gpu_);
    cudaMemsetAsync(data, 0xFF, bytes, compute_);
  }
  std::lock_guard lock(state_->mutex);
  state_->stats.live_bytes -= static_cast<int64_t>(bytes);
  state_->free[bytes].push_back(data);
}

MemoryStats CudaDevice::memory_stats() const {
  std::lock_guard lock(state_->mutex);
  return state_->stats;
}

void CudaDevice::Upload(std::span<const double> values, Tensor& out) {
  RequireShape(static_cast<int64_t>(values.size()) == out.size(), "Upload");
  // Rounded on the host exactly as HostTensor::FromDoubles rounds (dtype.h).
  const HostTensor host = HostTensor::FromDoubles(
      dtype_, out.rows(), out.cols(), std::vector<double>(values.begin(), values.end()));
  Bind();
  Check(
      cudaMemcpyAsync(out.data(), host.bytes.data(), out.bytes(), cudaMemcpyHostToDevice, compute_),
      "cudaMemcpyAsync (upload)");
  Check(cudaStreamSynchronize(compute_), "upload");  // `host` goes away on return
}

HostTensor CudaDevice::Download(const Tensor& t) {
  HostTensor h = HostTensor::Zeros(dtype_, t.rows(), t.cols());
  Bind();
  Check(cudaMemcpyAsync(h.bytes.data(), t.data(), t.bytes(), cudaMemcpyDeviceToHost, compute_),
        "cudaMemcpyAsync (download)");
  Check(cudaStreamSynchronize(compute_), "download");
  return h;
}

void CudaDevice::Zero(Tensor& t) {
  Bind();
  Check(cudaMemsetAsync(t.data(), 0, t.bytes(), compute_), "cudaMemsetAsync");
}

void CudaDevice::Copy(const Tensor& from, Tensor& to) {
  RequireShape(from.size() == to.size(), "Copy");
  Bind();
  Check(cudaMemcpyAsync(to.data(), from.data(), from.bytes(), cudaMemcpyDeviceToDevice, compute_),
        "cudaMemcpyAsync (copy)");
}

void CudaDevice::Synchronize() {
  Bind();
  Check(cudaStreamSynchronize(compute_), "synchronize");
}

void CudaDevice::Gemm(bool trans_a, bool trans_b, int m, int n, int k, const void* a, int lda,
                      const void* b, int ldb, void* c, int ldc) {
  const Cublas& blas = Cublas::Get();
  const float alpha = 1.0f, beta = 0.0f;  // beta 0: c's old contents (NaN when poisoned) unread
  const cudaDataType_t type = dtype_ == DType::kF32 ? CUDA_R_32F : CUDA_R_16BF;
  const cublasComputeType_t compute =
      dtype_ == DType::kF32 ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
  Bind();
  blas.Check(blas.gemm_ex(state_->handle, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                          trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha, a, type, lda, b,
                          type, ldb, &beta, c, type, ldc, compute, CUBLAS_GEMM_DEFAULT),
             "cublasGemmEx");
}

// Row-major [r, c] is column-major [c, r] with leading dimension c, so each row-major product is
// computed as its transpose in cuBLAS's column-major terms.
void CudaDevice::LinearForward(const Tensor& x, const Tensor& w, Tensor& y) {
  const int n = x.rows(), in = x.cols(), out = w.rows();
  RequireShape(w.cols() == in && y.rows() == n && y.cols() == out, "LinearForward");
  // y^T [out, n] = w [out, in] * x^T [in, n]
  Gemm(true, false, out, n, in, w.data(), in, x.data(), in, y.data(), out);
}

void CudaDevice::LinearInputGrad(const Tensor& gy, const Tensor& w, Tensor& gx) {
  const int n = gy.rows(), out = gy.cols(), in = w.cols();
  RequireShape(w.rows() == out && gx.rows() == n && gx.cols() == in, "LinearInputGrad");
  // gx^T [in, n] = w^T [in, out] * gy^T [out, n]
  Gemm(false, false, in, n, out, w.data(), in, gy.data(), out, gx.data(), in);
}

void CudaDevice::LinearWeightGrad(const Tensor& gy, const Tensor& x, Tensor& gw) {
  const int n = gy.rows(), out = gy.cols(), in = x.cols();
  RequireShape(x.rows() == n && gw.rows() == out && gw.cols() == in, "LinearWeightGrad");
  // gw^T [in, out] = x^T [in, n] * gy [n, out]
  Gemm(false, true, in, out, n, x.data(), in, gy.data(), out, gw.data(), in);
}

void CudaDevice::Gelu(const Tensor& h, Tensor& a) {
  RequireShape(h.size() == a.size(), "Gelu");
  Bind();
  Check(cuda::LaunchGelu(ElemOf(dtype_), h.data(), a.data(), h.size(), compute_), "gelu kernel");
}

void CudaDevice::GeluBackward(const Tensor& h, const Tensor& ga, Tensor& gh) {
  RequireShape(h.size() == ga.size() && h.size() == gh.size(), "GeluBackward");
  Bind();
  Check(
      cuda::LaunchGeluBackward(ElemOf(dtype_), h.data(), ga.data(), gh.data(), h.size(), compute_),
      "gelu backward kernel");
}

void CudaDevice::MseLoss(const Tensor& y, const Tensor& label, Tensor& loss, Tensor& gy) {
  RequireShape(y.size() == label.size() && y.size() == gy.size() && loss.size() == 1, "MseLoss");
  Bind();
  Check(cuda::LaunchMseLoss(ElemOf(dtype_), y.data(), label.data(), loss.data(), gy.data(),
                            y.size(), compute_),
        "mse loss kernel");
}

void CudaDevice::AddInPlace(Tensor& acc, const Tensor& t) {
  RequireShape(acc.size() == t.size(), "AddInPlace");
  Bind();
  Check(cuda::LaunchAddInPlace(ElemOf(dtype_), acc.data(), t.data(), acc.size(), compute_),
        "add kernel");
}

void CudaDevice::FlipBit(Tensor& t, int64_t element, int bit) {
  const int bits = static_cast<int>(8 * DTypeSize(dtype_));
  if (element < 0 || element >= t.size() || bit < 0 || bit >= bits) {
    throw std::logic_error("FlipBit: element or bit out of range");
  }
  Bind();
  Check(cuda::LaunchFlipBit(ElemOf(dtype_), t.data(), element, bit, compute_), "flip-bit kernel");
}

std::unique_ptr<Device> MakeCudaDevice(DType dtype, int gpu) {
  return std::make_unique<CudaDevice>(dtype, gpu);
}

std::vector<CudaDevice*> RequireCudaDevices(const std::vector<Device*>& devices,
                                            std::string_view user) {
  std::vector<CudaDevice*> cuda;
  for (size_t r = 0; r < devices.size(); ++r) {
    auto* d = dynamic_cast<CudaDevice*>(devices[r]);
    if (!d) {
      throw InputError(
          fmt::format("{} runs every rank on the CUDA device (--device cuda); rank {} "
                      "has {}",
                      user, r, devices[r] ? devices[r]->Name() : "none"));
    }
    cuda.push_back(d);
  }
  return cuda;
}

}  // namespace pipeproof
