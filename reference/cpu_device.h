// The CPU device: f64 or f32. Its matrix products are OpenBLAS GEMMs, one thread per call
// (reference/cpu_blas.h); the same shapes give the same bits on every call, whichever thread
// makes it (reference/cpu_blas.cpp says why), in the reference and in every rank. The elementwise
// kernels (GELU and its derivative, MSE, the sum) are plain loops, one rounding per multiply and
// per add (built with -ffp-contract=off, so no fused multiply-add the compiler might place
// differently in different copies of a loop).
#pragma once

#include <memory>

#include "reference/device.h"

namespace pipeproof {

// dtype must be kF64 or kF32 (InputError otherwise: the CPU has no bf16 kernels).
std::unique_ptr<Device> MakeCpuDevice(DType dtype);

}  // namespace pipeproof
