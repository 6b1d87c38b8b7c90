// The executor's wait for the compute stream before posting a unit (what keeps a GPU's
// communication from copying a payload a kernel is still writing), checked on the CPU by counting
// Device::Synchronize calls; and that PlantedBug::kSkipComputeEvent leaves exactly that wait out.
#include <gtest/gtest.h>

#include <atomic>

#include "exec/run.h"
#include "reference/cpu_device.h"
#include "schedule/generate.h"

namespace pipeproof {
namespace {

// The CPU device, counting the calls that would wait for a GPU's compute stream.
class CountingDevice final : public Device {
 public:
  explicit CountingDevice(std::atomic<int64_t>& syncs)
      : inner_(MakeCpuDevice(DType::kF64)), syncs_(syncs) {}
  std::string Name() const override { return inner_->Name(); }
  DType dtype() const override { return inner_->dtype(); }
  // The inner device's tensors: they go back to it when freed.
  Tensor Allocate(int rows, int cols) override { return inner_->Allocate(rows, cols); }
  void SetPoisonOnRelease(bool poison) override { inner_->SetPoisonOnRelease(poison); }
  void Upload(std::span<const double> values, Tensor& out) override { inner_->Upload(values, out); }
  HostTensor Download(const Tensor& t) override { return inner_->Download(t); }
  void Zero(Tensor& t) override { inner_->Zero(t); }
  void Copy(const Tensor& from, Tensor& to) override { inner_->Copy(from, to); }
  void Synchronize() override { syncs_.fetch_add(1); }
  MemoryStats memory_stats() const override { return inner_->memory_stats(); }
  void LinearForward(const Tensor& x, const Tensor& w, Tensor& y) override {
    inner_->LinearForward(x, w, y);
  }
  void LinearInputGrad(const Tensor& gy, const Tensor& w, Tensor& gx) override {
    inner_->LinearInputGrad(gy, w, gx);
  }
  void LinearWeightGrad(const Tensor& gy, const Tensor& x, Tensor& gw) override {
    inner_->LinearWeightGrad(gy, x, gw);
  }
  void Gelu(const Tensor& h, Tensor& a) override { inner_->Gelu(h, a); }
  void GeluBackward(const Tensor& h, const Tensor& ga, Tensor& gh) override {
    inner_->GeluBackward(h, ga, gh);
  }
  void MseLoss(const Tensor& y, const Tensor& label, Tensor& loss, Tensor& gy) override {
    inner_->MseLoss(y, label, loss, gy);
  }
  void AddInPlace(Tensor& acc, const Tensor& t) override { inner_->AddInPlace(acc, t); }
  void FlipBit(Tensor& t, int64_t element, int bit) override { inner_->FlipBit(t, element, bit); }

 protected:
  void Release(void*, size_t) override {}  // never called: Allocate hands out the inner device's

 private:
  std::unique_ptr<Device> inner_;
  std::atomic<int64_t>& syncs_;
};

int64_t Units(const RunPlan& plan) {
  int64_t units = 0;
  for (const PassPlan& pass : plan.passes) {
    for (const RankPlan& r : pass.ranks) units += static_cast<int64_t>(r.units.size());
  }
  return units;
}

int64_t SynchronizeCalls(const Schedule& s, PlantedBug bug) {
  std::atomic<int64_t> syncs{0};
  ExecOptions exec;
  exec.model.shape = {8, 4, 2};
  exec.planted_bug = bug;
  exec.make_device = [&](int) { return std::make_unique<CountingDevice>(syncs); };
  const RunPlan plan = PlanRun(s);
  const Execution e = MakeThreadWorld()->Execute(plan, FaultPlan{}, exec, {}, {});
  EXPECT_EQ(e.end, Execution::End::kComplete) << e.headline;
  return syncs.load();
}

TEST(ComputeEventTest, EveryUnitWaitsForTheComputeStreamUnlessThePlantedBugSkipsIt) {
  for (const Schedule& s : {Generate({.kind = "dualpipe", .ranks = 4, .microbatches = 8}),
                            Generate({.kind = "zb1p", .ranks = 3, .microbatches = 6})}) {
    const int64_t units = Units(PlanRun(s));
    ASSERT_GT(units, 0);
    EXPECT_EQ(SynchronizeCalls(s, PlantedBug::kNone), units) << s.kind << ": one wait per unit";
    EXPECT_EQ(SynchronizeCalls(s, PlantedBug::kSkipComputeEvent), 0) << s.kind;
  }
  EXPECT_EQ(PlantedBugName(PlantedBug::kSkipComputeEvent), "skip-compute-event");
  EXPECT_EQ(PlantedBugFromName("skip-compute-event"), PlantedBug::kSkipComputeEvent);
}

}  // namespace
}  // namespace pipeproof
