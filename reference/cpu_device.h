// The CPU device: f64 or f32, plain loops with a fixed summation order.
//
// Every output element of a product is summed over the inner index in increasing order, starting
// from +0, one rounding per multiply and per add (the library is built with -ffp-contract=off, so
// no fused multiply-add). The loops are arranged to vectorise across independent output elements,
// which never changes any element's order of operations; results are therefore the same bits on
// every call, in the reference and in every rank.
#pragma once

#include <memory>

#include "reference/device.h"

namespace pipeproof {

// dtype must be kF64 or kF32 (InputError otherwise: the CPU has no bf16 kernels).
std::unique_ptr<Device> MakeCpuDevice(DType dtype);

}  // namespace pipeproof
