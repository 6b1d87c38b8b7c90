#include "reference/cpu_device.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <new>
#include <stdexcept>
#include <vector>

#include "reference/cpu_blas.h"
#include "schedule/errors.h"  // InputError

namespace pipeproof {
namespace {

template <class T>
constexpr DType DTypeOf() {
  return std::is_same_v<T, double> ? DType::kF64 : DType::kF32;
}

void RequireShape(bool ok, const char* kernel) {
  if (!ok) throw std::logic_error(fmt::format("cpu device: shape mismatch in {}", kernel));
}

template <class T>
class CpuDevice final : public Device {
 public:
  ~CpuDevice() override {
    for (auto& [bytes, blocks] : free_) {
      for (void* p : blocks) ::operator delete(p, std::align_val_t{kAlignment});
    }
  }

  std::string Name() const override { return fmt::format("cpu-{}", DTypeName(dtype())); }
  DType dtype() const override { return DTypeOf<T>(); }

  Tensor Allocate(int rows, int cols) override {
    const size_t bytes = static_cast<size_t>(int64_t{rows} * cols) * sizeof(T);
    void* data = nullptr;
    {
      std::lock_guard lock(mutex_);
      ++stats_.allocations;
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        data = it->second.back();
        it->second.pop_back();
        ++stats_.reuses;
      }
      stats_.live_bytes += static_cast<int64_t>(bytes);
      stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.live_bytes);
    }
    if (!data) data = ::operator new(std::max<size_t>(bytes, 1), std::align_val_t{kAlignment});
    return Tensor(this, data, rows, cols, dtype());
  }

  void SetPoisonOnRelease(bool poison) override { poison_ = poison; }

  MemoryStats memory_stats() const override {
    std::lock_guard lock(mutex_);
    return stats_;
  }

  void Upload(std::span<const double> values, Tensor& out) override {
    RequireShape(static_cast<int64_t>(values.size()) == out.size(), "Upload");
    T* p = Data(out);
    for (size_t i = 0; i < values.size(); ++i) p[i] = static_cast<T>(values[i]);
  }

  HostTensor Download(const Tensor& t) override {
    HostTensor h = HostTensor::Zeros(dtype(), t.rows(), t.cols());
    std::memcpy(h.bytes.data(), t.data(), t.bytes());
    return h;
  }

  void Zero(Tensor& t) override { std::fill_n(Data(t), t.size(), T(0)); }

  void Copy(const Tensor& from, Tensor& to) override {
    RequireShape(from.size() == to.size(), "Copy");
    std::memcpy(to.data(), from.data(), from.bytes());
  }

  // y = x w^T: [n, in] [in, out].
  void LinearForward(const Tensor& x, const Tensor& w, Tensor& y) override {
    const int n = x.rows(), in = x.cols(), out = w.rows();
    RequireShape(w.cols() == in && y.rows() == n && y.cols() == out, "LinearForward");
    BlasGemm(false, true, n, out, in, Data(x), in, Data(w), in, Data(y), out);
  }

  // gx = gy w: [n, out] [out, in].
  void LinearInputGrad(const Tensor& gy, const Tensor& w, Tensor& gx) override {
    const int n = gy.rows(), out = gy.cols(), in = w.cols();
    RequireShape(w.rows() == out && gx.rows() == n && gx.cols() == in, "LinearInputGrad");
    BlasGemm(false, false, n, in, out, Data(gy), out, Data(w), in, Data(gx), in);
  }

  // gw = gy^T x: [out, n] [n, in].
  void LinearWeightGrad(const Tensor& gy, const Tensor& x, Tensor& gw) override {
    const int n = gy.rows(), out = gy.cols(), in = x.cols();
    RequireShape(x.rows() == n && gw.rows() == out && gw.cols() == in, "LinearWeightGrad");
    BlasGemm(true, false, out, in, n, Data(gy), out, Data(x), in, Data(gw), in);
  }

  void Gelu(const Tensor& h, Tensor& a) override {
    RequireShape(h.size() == a.size(), "Gelu");
    const T* hp = Data(h);
    T* ap = Data(a);
    for (int64_t i = 0; i < h.size(); ++i) {
      const T v = hp[i];
      ap[i] = T(0.5) * v * (T(1) + std::erf(v * kInvSqrt2));
    }
  }

  void GeluBackward(const Tensor& h, const Tensor& ga, Tensor& gh) override {
    RequireShape(h.size() == ga.size() && h.size() == gh.size(), "GeluBackward");
    const T* hp = Data(h);
    const T* gp = Data(ga);
    T* op = Data(gh);
    for (int64_t i = 0; i < h.size(); ++i) {
      const T v = hp[i];
      const T cdf = T(0.5) * (T(1) + std::erf(v * kInvSqrt2));
      const T pdf = std::exp(T(-0.5) * v * v) * kInvSqrt2Pi;
      op[i] = gp[i] * (cdf + v * pdf);
    }
  }

  void MseLoss(const Tensor& y, const Tensor& label, Tensor& loss, Tensor& gy) override {
    RequireShape(y.size() == label.size() && y.size() == gy.size() && loss.size() == 1, "MseLoss");
    const T* yp = Data(y);
    const T* lp = Data(label);
    T* gp = Data(gy);
    const T count = static_cast<T>(y.size());
    const T scale = T(2) / count;
    T sum = 0;
    for (int64_t i = 0; i < y.size(); ++i) {
      const T d = yp[i] - lp[i];
      sum += d * d;
      gp[i] = d * scale;
    }
    Data(loss)[0] = sum / count;
  }

  void AddInPlace(Tensor& acc, const Tensor& t) override {
    RequireShape(acc.size() == t.size(), "AddInPlace");
    T* __restrict a = Data(acc);
    const T* __restrict b = Data(t);
    for (int64_t i = 0; i < acc.size(); ++i) a[i] += b[i];
  }

  void FlipBit(Tensor& t, int64_t element, int bit) override {
    if (element < 0 || element >= t.size() || bit < 0 || bit >= static_cast<int>(8 * sizeof(T))) {
      throw std::logic_error("FlipBit: element or bit out of range");
    }
    using Bits = std::conditional_t<sizeof(T) == 8, uint64_t, uint32_t>;
    Bits b;
    std::memcpy(&b, Data(t) + element, sizeof(T));
    b ^= Bits{1} << bit;
    std::memcpy(Data(t) + element, &b, sizeof(T));
  }

 protected:
  void Release(void* data, size_t bytes) override {
    if (poison_) std::fill_n(static_cast<T*>(data), bytes / sizeof(T), std::numeric_limits<T>::quiet_NaN());
    std::lock_guard lock(mutex_);
    stats_.live_bytes -= static_cast<int64_t>(bytes);
    free_[bytes].push_back(data);
  }

 private:
  static constexpr size_t kAlignment = 64;
  static constexpr T kInvSqrt2 = T(0.70710678118654752440084436210484903928);
  static constexpr T kInvSqrt2Pi = T(0.39894228040143267793994605993438186848);

  static T* Data(Tensor& t) { return static_cast<T*>(t.data()); }
  static const T* Data(const Tensor& t) { return static_cast<const T*>(t.data()); }

  mutable std::mutex mutex_;  // the pool is shared by a rank's compute and communication threads
  std::map<size_t, std::vector<void*>> free_;
  MemoryStats stats_;
  bool poison_ = false;
};

}  // namespace

std::unique_ptr<Device> MakeCpuDevice(DType dtype) {
  switch (dtype) {
    case DType::kF64: return std::make_unique<CpuDevice<double>>();
    case DType::kF32: return std::make_unique<CpuDevice<float>>();
    default:
      throw InputError(fmt::format("the CPU device computes in f64 or f32, not {}", DTypeName(dtype)));
  }
}

}  // namespace pipeproof
