// The CPU device against its BLAS (issue 18): the sequential reference step's GFLOP/s next to
// OpenBLAS's own single-core GEMM rate on the very GEMMs the step makes, measured in the same run,
// f64 and f32, with their ratio (the goal: at least 0.5), and where the step's time goes.
//   build/bin/cpu_device_bench                       DualPipe 8 x 20, hidden 256, seq 64, b 2
//   build/bin/cpu_device_bench --hidden 512 --seq 128 --repeats 5
// FLOP counts are 2 m n k per GEMM (a multiply-add is two). The step is the whole RunReference
// (weights and data generated, every microbatch's forward and backward, gradients summed and
// downloaded), timed as a user's `pipeproof run` times it, best of --repeats. The BLAS rate is
// the step's GEMM FLOPs over the time cblas_?gemm alone takes for each distinct shape the step
// uses, as many times as the step uses it, best of --repeats, on freshly made operands.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "reference/cpu_blas.h"
#include "reference/cpu_device.h"
#include "reference/reference.h"
#include "schedule/generate.h"

namespace pipeproof {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

// One GEMM as the device calls BlasGemm (row-major, c[m, n] = op(a) op(b)).
struct GemmShape {
  bool trans_a, trans_b;
  int m, n, k;
  auto operator<=>(const GemmShape&) const = default;
  double Flops() const { return 2.0 * m * n * k; }
  std::string Name() const { return fmt::format("{}{} {}x{}x{}", trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k); }
};

// Runs f, adding its time to `total` (also when it throws).
template <class F>
auto Timed(double& total, F&& f) {
  struct Stop {
    double& total;
    Clock::time_point start;
    ~Stop() { total += Seconds(start); }
  } stop{total, Clock::now()};
  return f();
}

// The CPU device with a stopwatch per kernel and a tally of the GEMMs it makes.
class MeteredDevice final : public Device {
 public:
  explicit MeteredDevice(DType dtype) : inner_(MakeCpuDevice(dtype)) {}

  std::map<std::string, double> seconds;  // per kernel
  std::map<GemmShape, int64_t> gemms;     // shape -> calls

  std::string Name() const override { return inner_->Name(); }
  DType dtype() const override { return inner_->dtype(); }
  Tensor Allocate(int rows, int cols) override {
    return Timed(seconds["allocate"], [&] { return inner_->Allocate(rows, cols); });
  }
  void SetPoisonOnRelease(bool poison) override { inner_->SetPoisonOnRelease(poison); }
  void Upload(std::span<const double> v, Tensor& out) override {
    Timed(seconds["upload"], [&] { inner_->Upload(v, out); });
  }
  HostTensor Download(const Tensor& t) override {
    return Timed(seconds["download"], [&] { return inner_->Download(t); });
  }
  void Zero(Tensor& t) override { Timed(seconds["zero"], [&] { inner_->Zero(t); }); }
  void Copy(const Tensor& from, Tensor& to) override { Timed(seconds["copy"], [&] { inner_->Copy(from, to); }); }
  MemoryStats memory_stats() const override { return inner_->memory_stats(); }
  void LinearForward(const Tensor& x, const Tensor& w, Tensor& y) override {
    ++gemms[{false, true, x.rows(), w.rows(), x.cols()}];
    Timed(seconds["GEMM"], [&] { inner_->LinearForward(x, w, y); });
  }
  void LinearInputGrad(const Tensor& gy, const Tensor& w, Tensor& gx) override {
    ++gemms[{false, false, gy.rows(), w.cols(), gy.cols()}];
    Timed(seconds["GEMM"], [&] { inner_->LinearInputGrad(gy, w, gx); });
  }
  void LinearWeightGrad(const Tensor& gy, const Tensor& x, Tensor& gw) override {
    ++gemms[{true, false, gy.cols(), x.cols(), gy.rows()}];
    Timed(seconds["GEMM"], [&] { inner_->LinearWeightGrad(gy, x, gw); });
  }
  void Gelu(const Tensor& h, Tensor& a) override { Timed(seconds["GELU"], [&] { inner_->Gelu(h, a); }); }
  void GeluBackward(const Tensor& h, const Tensor& ga, Tensor& gh) override {
    Timed(seconds["GELU backward"], [&] { inner_->GeluBackward(h, ga, gh); });
  }
  void MseLoss(const Tensor& y, const Tensor& l, Tensor& loss, Tensor& gy) override {
    Timed(seconds["MSE"], [&] { inner_->MseLoss(y, l, loss, gy); });
  }
  void AddInPlace(Tensor& acc, const Tensor& t) override { Timed(seconds["add"], [&] { inner_->AddInPlace(acc, t); }); }
  void FlipBit(Tensor& t, int64_t element, int bit) override { inner_->FlipBit(t, element, bit); }

 protected:
  // Tensors belong to the inner device, which takes them back itself.
  void Release(void*, size_t) override { throw std::logic_error("MeteredDevice::Release"); }

 private:
  std::unique_ptr<Device> inner_;
};

// Seconds for `calls` GEMMs of one shape, straight through the device's own BlasGemm (the same
// library, pinned the same way), best of `repeats`.
template <class T>
double BlasSeconds(const GemmShape& s, int64_t calls, int repeats) {
  const int a_rows = s.trans_a ? s.k : s.m, a_cols = s.trans_a ? s.m : s.k;
  const int b_rows = s.trans_b ? s.n : s.k, b_cols = s.trans_b ? s.k : s.n;
  std::vector<T> a(size_t(a_rows) * a_cols), b(size_t(b_rows) * b_cols), c(size_t(s.m) * s.n);
  for (size_t i = 0; i < a.size(); ++i) a[i] = T(0.001) * T(i % 1000);
  for (size_t i = 0; i < b.size(); ++i) b[i] = T(0.002) * T(i % 500);
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const auto start = Clock::now();
    for (int64_t i = 0; i < calls; ++i) {
      BlasGemm<T>(s.trans_a, s.trans_b, s.m, s.n, s.k, a.data(), a_cols, b.data(), b_cols, c.data(), s.n);
    }
    best = std::min(best, Seconds(start));
  }
  return best;
}

// Prints the step's rate, the BLAS's own on the same GEMMs, and their ratio.
void Measure(DType dtype, const Schedule& schedule, ModelConfig config, int repeats) {
  config.dtype = dtype;
  const AccumulationOrder order = AccumulationOrderOf(schedule, AccumulationMode::kSchedule);
  double best = 1e300;
  std::unique_ptr<MeteredDevice> kept;
  for (int r = 0; r < repeats; ++r) {
    auto device = std::make_unique<MeteredDevice>(dtype);
    const auto start = Clock::now();
    const StepResults results = RunReference(schedule, config, order, *device);
    const double took = Seconds(start);
    if (took < best) {
      best = took;
      kept = std::move(device);
    }
  }
  double gemm_flops = 0;
  for (const auto& [shape, calls] : kept->gemms) gemm_flops += shape.Flops() * double(calls);
  const double step_rate = gemm_flops / best / 1e9;
  fmt::print("{}  reference step: {:.1f} GFLOP in {:.3f} s = {:.1f} GFLOP/s\n", DTypeName(dtype), gemm_flops / 1e9,
             best, step_rate);

  std::vector<std::pair<double, std::string>> parts;
  double in_kernels = 0;
  for (const auto& [kernel, s] : kept->seconds) {
    parts.push_back({s, kernel});
    in_kernels += s;
  }
  parts.push_back({best - in_kernels, "outside the device (weights, data, bookkeeping)"});
  std::sort(parts.rbegin(), parts.rend());
  std::vector<std::string> shares;
  for (const auto& [s, what] : parts) shares.push_back(fmt::format("{} {:.1f}%", what, 100 * s / best));
  fmt::print("     where the step's time goes: {}\n", fmt::join(shares, ", "));

  double blas_seconds = 0;
  std::vector<std::string> per_shape;
  for (const auto& [shape, calls] : kept->gemms) {
    const double s = dtype == DType::kF64 ? BlasSeconds<double>(shape, calls, repeats)
                                          : BlasSeconds<float>(shape, calls, repeats);
    blas_seconds += s;
    per_shape.push_back(fmt::format("{} x{} {:.1f}", shape.Name(), calls, shape.Flops() * double(calls) / s / 1e9));
  }
  const double blas_rate = gemm_flops / blas_seconds / 1e9;
  fmt::print("     OpenBLAS GEMM alone, same shapes and counts: {:.1f} GFLOP/s ({:.3f} s; GFLOP/s per shape: {})\n",
             blas_rate, blas_seconds, fmt::join(per_shape, ", "));
  const double ratio = step_rate / blas_rate;
  fmt::print("     ratio step / BLAS: {:.2f} ({} the goal of 0.5)\n", ratio, ratio >= 0.5 ? "meets" : "MISSES");
}

}  // namespace
}  // namespace pipeproof

int main(int argc, char** argv) {
  using namespace pipeproof;
  CLI::App app{"The CPU device's reference step against its BLAS's own GEMM rate"};
  int ranks = 8, microbatches = 20, repeats = 3;
  ModelConfig config;
  config.shape = {256, 64, 2};
  app.add_option("-r,--ranks", ranks, "DualPipe ranks")->capture_default_str();
  app.add_option("-m,--microbatches", microbatches, "microbatches")->capture_default_str();
  app.add_option("--hidden", config.shape.hidden, "hidden size H")->capture_default_str();
  app.add_option("--seq", config.shape.seq, "sequence length L")->capture_default_str();
  app.add_option("--micro-batch-size", config.shape.micro_batch_size, "micro-batch size b")->capture_default_str();
  app.add_option("--repeats", repeats, "best of this many")->capture_default_str()->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  CheckModelConfig(config);
  const Schedule schedule = GenerateDualPipe(ranks, microbatches, true);
  PinBlasThreads();
  fmt::print("cpu_device_bench: DualPipe {} ranks x {} microbatches, hidden {}, seq {}, micro-batch {}\n", ranks,
             microbatches, config.shape.hidden, config.shape.seq, config.shape.micro_batch_size);
  fmt::print("{}\n", BlasDescription());
  for (DType dtype : {DType::kF64, DType::kF32}) Measure(dtype, schedule, config, repeats);
  return 0;
}
