#include "reference/mismatch_report.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

namespace pipeproof {
namespace {

HostTensor F64(int rows, int cols, std::vector<double> v) {
  return HostTensor::FromDoubles(DType::kF64, rows, cols, v);
}

TEST(UlpTest, CountsRepresentableStepsAcrossZero) {
  const double one = 1.0;
  const double next = std::nextafter(one, 2.0);
  HostTensor t = F64(1, 4, {one, next, 0.0, -0.0});
  EXPECT_EQ(UlpDistance(DType::kF64, t.BitsAt(0), t.BitsAt(1)), 1u);
  EXPECT_EQ(UlpDistance(DType::kF64, t.BitsAt(2), t.BitsAt(3)), 1u);
  const double tiny = std::numeric_limits<double>::denorm_min();
  HostTensor u = F64(1, 2, {tiny, -tiny});
  EXPECT_EQ(UlpDistance(DType::kF64, u.BitsAt(0), u.BitsAt(1)), 3u);  // -tiny, -0, +0, +tiny
}

TEST(CompareTensorsTest, ExactFindsTheFirstDifferingElement) {
  HostTensor ref = F64(2, 3, {1, 2, 3, 4, 5, 6});
  HostTensor run = ref;
  EXPECT_TRUE(CompareTensors("t", run, ref, ComparePolicy::Exact()).ok());
  run = F64(2, 3, {1, 2, 3, std::nextafter(4.0, 5.0), 5, 7});
  TensorComparison c = CompareTensors("t", run, ref, ComparePolicy::Exact());
  EXPECT_FALSE(c.ok());
  EXPECT_EQ(c.mismatches, 2);
  EXPECT_EQ(c.first_index, 3);
  EXPECT_EQ(c.FirstPosition(), "[1,0]");
  EXPECT_EQ(c.first_ref, 4.0);
  EXPECT_EQ(c.max_abs, 1.0);
  EXPECT_DOUBLE_EQ(c.max_rel, 1.0 / 6);
  ASSERT_TRUE(c.max_ulp);
  EXPECT_GT(*c.max_ulp, 1u);
  EXPECT_GT(c.cosine, 0);
}

TEST(CompareTensorsTest, ExactSeesTheSignOfZero) {
  TensorComparison c = CompareTensors("z", F64(1, 1, {-0.0}), F64(1, 1, {0.0}), ComparePolicy::Exact());
  EXPECT_EQ(c.mismatches, 1);
  EXPECT_EQ(c.max_ulp, 1u);
}

TEST(CompareTensorsTest, ToleranceAllowsSmallErrors) {
  HostTensor ref = F64(1, 2, {1.0, 0.0});
  HostTensor run = F64(1, 2, {1.0 + 1e-10, 1e-13});
  EXPECT_TRUE(CompareTensors("t", run, ref, ComparePolicy::Tolerance(DType::kF64)).ok());
  EXPECT_FALSE(CompareTensors("t", run, ref, ComparePolicy::Exact()).ok());
  run = F64(1, 2, {1.001, 0.0});
  EXPECT_FALSE(CompareTensors("t", run, ref, ComparePolicy::Tolerance(DType::kF64)).ok());
}

// The absolute tolerance follows the tensor's scale: the same relative error passes or fails
// whether the values are near 1 or near 1e-6.
TEST(CompareTensorsTest, AbsoluteToleranceIsRelativeToTheTensorsScale) {
  const ComparePolicy p{ComparePolicy::Mode::kTolerance, 0, 1e-3};
  for (double scale : {1.0, 1e-6}) {
    HostTensor ref = F64(1, 3, {scale, -scale / 2, 0});
    EXPECT_TRUE(CompareTensors("t", F64(1, 3, {scale, -scale / 2, scale * 5e-4}), ref, p).ok()) << scale;
    EXPECT_FALSE(CompareTensors("t", F64(1, 3, {scale, -scale / 2, scale * 2e-3}), ref, p).ok()) << scale;
  }
  EXPECT_EQ(p.Describe(), "tolerance (rtol 0, atol 0.001 x max|ref|)");
}

TEST(CompareTensorsTest, NaNIsAlwaysReported) {
  HostTensor run = F64(1, 2, {1.0, std::numeric_limits<double>::quiet_NaN()});
  TensorComparison c = CompareTensors("t", run, F64(1, 2, {1.0, 2.0}), ComparePolicy::Tolerance(DType::kF64));
  EXPECT_EQ(c.mismatches, 1);
  EXPECT_TRUE(std::isnan(c.max_abs));
  EXPECT_FALSE(c.max_ulp);
}

TEST(CompareTensorsTest, CosineMeasureIsTheReferenceExamples) {
  TensorComparison c = CompareTensors("t", F64(1, 2, {1, 0}), F64(1, 2, {0, 1}), ComparePolicy::Exact());
  EXPECT_EQ(c.cosine, 1.0);  // orthogonal
  c = CompareTensors("t", F64(1, 2, {1, 2}), F64(1, 2, {1, 2}), ComparePolicy::Exact());
  EXPECT_EQ(c.cosine, 0.0);
  c = CompareTensors("t", F64(1, 2, {2, 4}), F64(1, 2, {1, 2}), ComparePolicy::Exact());
  EXPECT_NEAR(c.cosine, 1 - 2.0 * 10 / 25, 1e-15);
}

TEST(CompareTensorsTest, ShapeMismatchIsAProblemNotACrash) {
  TensorComparison c = CompareTensors("t", F64(1, 2, {1, 2}), F64(2, 1, {1, 2}), ComparePolicy::Exact());
  EXPECT_FALSE(c.ok());
  EXPECT_NE(c.shape_problem.find("1x2"), std::string::npos);
}

TEST(MismatchReportTest, TextListsWorstFirstAndJsonHasEverything) {
  MismatchReport report;
  HostTensor ref = F64(1, 3, {1, 2, 3});
  report.tensors.push_back(CompareTensors("same", ref, ref, report.policy));
  report.tensors.push_back(CompareTensors("slightly", F64(1, 3, {1, 2, std::nextafter(3.0, 4.0)}), ref, report.policy));
  report.tensors.push_back(CompareTensors("badly", F64(1, 3, {1, 20, 3}), ref, report.policy));
  for (auto& t : report.tensors) t.group = "gradients";
  EXPECT_FALSE(report.ok());
  EXPECT_EQ(report.MismatchingTensors(), 2);
  const std::string text = report.Text();
  EXPECT_NE(text.find("2 of 3 tensors differ"), std::string::npos) << text;
  EXPECT_LT(text.find("badly"), text.find("slightly")) << text;
  EXPECT_EQ(text.find("same"), std::string::npos) << text;
  EXPECT_NE(text.find("first [0,1] run 20 ref 2"), std::string::npos) << text;
  EXPECT_EQ(report.Text(1).find("slightly"), std::string::npos);
  EXPECT_NE(report.Text(1).find("and 1 more"), std::string::npos);

  auto j = nlohmann::json::parse(report.Json());
  EXPECT_FALSE(j["ok"].get<bool>());
  EXPECT_EQ(j["mode"], "exact");
  ASSERT_EQ(j["tensors"].size(), 3u);
  EXPECT_EQ(j["tensors"][0]["name"], "badly");
  EXPECT_EQ(j["tensors"][0]["first"]["index"], 1);
  EXPECT_EQ(j["tensors"][0]["first"]["run"], 20.0);
  EXPECT_EQ(j["tensors"][2]["ok"], true);

  MismatchReport clean;
  clean.tensors.push_back(CompareTensors("same", ref, ref, clean.policy));
  clean.tensors[0].group = "losses";
  EXPECT_EQ(clean.Text(), "exact: all 1 tensors match (1 losses), bit for bit\n");
}

}  // namespace
}  // namespace pipeproof
