#include "reference/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace pipeproof {
namespace {

TEST(DTypeTest, NamesRoundTrip) {
  for (DType d : {DType::kF64, DType::kF32, DType::kBF16}) {
    EXPECT_EQ(DTypeFromName(DTypeName(d)), d);
  }
  EXPECT_FALSE(DTypeFromName("f16"));
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
}

TEST(DTypeTest, Bf16RoundsToNearestEven) {
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f)), 1.0f);
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa, 1.
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f + 0x1.0p-8f)), 1.0f);
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f + 0x1.8p-8f)), 1.0f + 0x1.0p-7f);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(HostTensorTest, KeepsBitsAndSumsInItsOwnPrecision) {
  HostTensor a = HostTensor::FromDoubles(DType::kF32, 1, 2, {1.0, 0.1});
  EXPECT_EQ(a.At(1), static_cast<double>(0.1f));
  HostTensor b = HostTensor::FromDoubles(DType::kF32, 1, 2, {1e-8, 0.2});
  HostTensor s = Sum(a, b);
  EXPECT_EQ(s.At(0), 1.0);  // 1 + 1e-8 rounds back to 1 in f32
  EXPECT_EQ(s.At(1), static_cast<double>(0.1f + 0.2f));
  HostTensor d = HostTensor::FromDoubles(DType::kF64, 1, 1, {-0.0});
  EXPECT_EQ(d.BitsAt(0), uint64_t{1} << 63);
}

}  // namespace
}  // namespace pipeproof
