// The fuzz campaign on one GPU (CTest label `gpu`): clean GPU cases pass, and the planted missing
// compute event (PlantedBug::kSkipComputeEvent, a race between a send's device copy and the
// kernel writing its payload) is found, shrunk and replayed through `pipeproof run --device cuda`.
// Skips, saying why, where there is no usable GPU.
#include <gtest/gtest.h>

#include <filesystem>

#include "exec/streams_transport.h"
#include "fuzz/campaign.h"
#include "reference/cuda_device.h"
#include "reference/cuda_test_util.h"

namespace pipeproof {
namespace {

CampaignOptions GpuCampaign(uint64_t seed, int64_t cases, PlantedBug bug, const std::string& name) {
  CampaignOptions o;
  o.seed = seed;
  o.iterations = cases;
  o.out_dir = (std::filesystem::temp_directory_path() / ("pipeproof-gpu-fuzz-" + name)).string();
  o.pipeproof = PIPEPROOF_BINARY;
  o.settings.model.shape = {64, 32, 2};  // kernels long enough for a race to have room
  o.settings.model.dtype = DType::kF32;
  o.settings.device = "cuda";
  o.settings.make_device = [](int) { return MakeCudaDevice(DType::kF32); };
  o.settings.planted_bug = bug;
  o.limits.kinds = {"dualpipe", "dualpipev", "zb1p"};
  o.replay_checks = 2;
  return o;
}

TEST(GpuCampaignTest, CleanGpuCasesPass) {
  SKIP_WITHOUT_GPU();
  CampaignOptions o = GpuCampaign(5, 30, PlantedBug::kNone, "clean");
  o.limits.controls = 0.2;
  auto runner = MakeThreadRunner([] { return MakeStreamsWorld(); });
  EXPECT_EQ(runner->Transport(), "streams");
  const CampaignResult r = RunCampaign(o, *runner, {});
  EXPECT_EQ(r.stats.failures, 0) << r.Json(o, runner->Transport());
  EXPECT_EQ(r.stats.controls_caught, r.stats.controls);
}

TEST(GpuCampaignTest, TheMissingComputeEventIsFoundAndReplayed) {
  SKIP_WITHOUT_GPU();
  const CampaignOptions o = GpuCampaign(1, 40, PlantedBug::kSkipComputeEvent, "race");
  auto runner = MakeThreadRunner([] { return MakeStreamsWorld(); });
  const CampaignResult r = RunCampaign(o, *runner, {});
  ASSERT_EQ(r.stats.failures, 1) << "skip-compute-event went unnoticed in 40 GPU cases";
  const FailureReport& f = r.failures[0];
  EXPECT_NE(f.replay.find("PIPEPROOF_PLANTED_BUG=skip-compute-event"), std::string::npos)
      << f.replay;
  EXPECT_NE(f.replay.find("--device cuda"), std::string::npos) << f.replay;
  // A race: the replay reproduces it often, not necessarily every time.
  EXPECT_GT(f.replay_reproduced, 0) << f.replay;
}

}  // namespace
}  // namespace pipeproof
