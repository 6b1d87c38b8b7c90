#include "reference/reference.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "reference/cpu_device.h"
#include "schedule/generate.h"

namespace pipeproof {
namespace {

ModelConfig Tiny(DType dtype = DType::kF64) {
  ModelConfig c;
  c.shape = {8, 4, 2};
  c.dtype = dtype;
  c.seed = 5;
  return c;
}

StepResults Reference(const Schedule& s, const ModelConfig& c, const AccumulationOrder& order) {
  auto device = MakeCpuDevice(c.dtype);
  return RunReference(s, c, order, *device);
}

TEST(AccumulationOrderTest, DualPipeSumsEachCopyOfABlockSeparately) {
  const Schedule s = GenerateDualPipe(4, 8, true);
  const AccumulationOrder order = AccumulationOrderOf(s, AccumulationMode::kSchedule);
  ASSERT_EQ(order.blocks.size(), 4u);
  // Block 0: stage 0 (direction 0, microbatches 0-3) then stage 4 (direction 1, 4-7).
  ASSERT_EQ(order.blocks[0].size(), 2u);
  EXPECT_EQ(order.blocks[0][0], (std::vector<GradTerm>{{0, 0}, {0, 1}, {0, 2}, {0, 3}}));
  EXPECT_EQ(order.blocks[0][1], (std::vector<GradTerm>{{4, 4}, {4, 5}, {4, 6}, {4, 7}}));
  const AccumulationOrder natural = AccumulationOrderOf(s, AccumulationMode::kNatural);
  ASSERT_EQ(natural.blocks[0].size(), 1u);
  EXPECT_EQ(natural.blocks[0][0].size(), 8u);
  EXPECT_EQ(natural.blocks[0][0][4], (GradTerm{4, 4}));
}

TEST(ReferenceTest, NaturalAndScheduleOrdersAgreeWhereTheyAddInTheSameOrder) {
  const Schedule s = Generate({.kind = "1f1b", .ranks = 3, .microbatches = 5});
  const ModelConfig c = Tiny();
  EXPECT_EQ(Reference(s, c, AccumulationOrderOf(s, AccumulationMode::kSchedule)),
            Reference(s, c, AccumulationOrderOf(s, AccumulationMode::kNatural)));
}

TEST(ReferenceTest, RegroupingChangesBitsButStaysWithinTolerance) {
  const Schedule s = GenerateDualPipe(2, 8, true);
  for (DType dtype : {DType::kF64, DType::kF32}) {
    const ModelConfig c = Tiny(dtype);
    const StepResults grouped = Reference(s, c, AccumulationOrderOf(s, AccumulationMode::kSchedule));
    const StepResults natural = Reference(s, c, AccumulationOrderOf(s, AccumulationMode::kNatural));
    EXPECT_EQ(grouped.losses, natural.losses);
    EXPECT_EQ(grouped.outputs, natural.outputs);
    EXPECT_TRUE(CompareStep(s, grouped, natural, ComparePolicy::Tolerance(dtype)).ok())
        << CompareStep(s, grouped, natural, ComparePolicy::Tolerance(dtype)).Text();
  }
}

TEST(ReferenceTest, TermsProducedOutOfOrderWaitForTheirTurn) {
  const Schedule s = Generate({.kind = "gpipe", .ranks = 2, .microbatches = 4});
  const ModelConfig c = Tiny();
  AccumulationOrder reversed = AccumulationOrderOf(s, AccumulationMode::kSchedule);
  for (auto& partials : reversed.blocks) {
    for (auto& terms : partials) std::reverse(terms.begin(), terms.end());
  }
  const StepResults a = Reference(s, c, reversed);
  const StepResults b = Reference(s, c, AccumulationOrderOf(s, AccumulationMode::kSchedule));
  EXPECT_TRUE(CompareStep(s, a, b, ComparePolicy::Tolerance(DType::kF64)).ok());
}

TEST(CompareStepTest, NamesLossesOutputsAndSharedBlocks) {
  const Schedule s = GenerateDualPipe(2, 4, true);
  const ModelConfig c = Tiny();
  const StepResults ref = Reference(s, c, AccumulationOrderOf(s, AccumulationMode::kSchedule));
  StepResults run = ref;
  MismatchReport same = CompareStep(s, run, ref, ComparePolicy::Exact());
  EXPECT_TRUE(same.ok());
  EXPECT_EQ(same.tensors.size(), 1u + 4u + 2u * 2u);
  EXPECT_EQ(same.Text(), "exact: all 9 tensors match (1 losses, 4 outputs, 4 gradients), bit for bit\n");

  run.grads[1].w2.bytes[8] ^= 1;  // the second element's lowest bit
  MismatchReport diff = CompareStep(s, run, ref, ComparePolicy::Exact());
  ASSERT_EQ(diff.MismatchingTensors(), 1);
  const std::string text = diff.Text();
  EXPECT_NE(text.find("block 1 linear2.weight.grad (stages 1 (rank 1) + 3 (rank 0))"), std::string::npos) << text;
  EXPECT_NE(text.find("1 of 256 differ; first [0,1]"), std::string::npos) << text;
  EXPECT_NE(text.find("max ulp 1"), std::string::npos) << text;
}

}  // namespace
}  // namespace pipeproof
