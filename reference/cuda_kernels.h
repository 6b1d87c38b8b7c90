// The CUDA device's own kernels (everything that is not a GEMM), as plain launch functions so that
// the device itself (reference/cuda_device.cpp) is ordinary C++ and only this file's .cu goes
// through nvcc. Every launch queues on `stream` and returns the launch's error.
//
// Arithmetic: one rounding per operation (the kernels are compiled with --fmad=false, like the CPU
// device's -ffp-contract=off), erff/expf from CUDA's libdevice (not the fast intrinsics), and bf16
// values widened to f32, computed in f32 and rounded once to nearest even on store. Every output
// element depends only on its inputs and a fixed launch shape, so results are the same bits on
// every run and in every rank.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace pipeproof::cuda {

enum class Elem : uint8_t { kF32, kBF16 };

cudaError_t LaunchGelu(Elem e, const void* h, void* a, int64_t n, cudaStream_t s);
cudaError_t LaunchGeluBackward(Elem e, const void* h, const void* ga, void* gh, int64_t n,
                               cudaStream_t s);
// loss[0] = sum((y - label)^2) / n, summed in f32 in a fixed order (one block, fixed shape);
// gy = 2 (y - label) / n.
cudaError_t LaunchMseLoss(Elem e, const void* y, const void* label, void* loss, void* gy, int64_t n,
                          cudaStream_t s);
cudaError_t LaunchAddInPlace(Elem e, void* acc, const void* t, int64_t n, cudaStream_t s);
cudaError_t LaunchFlipBit(Elem e, void* t, int64_t element, int bit, cudaStream_t s);
// Holds `stream` for `ns` nanoseconds of GPU time (%globaltimer): an injected delivery delay.
cudaError_t LaunchSpin(uint64_t ns, cudaStream_t s);

}  // namespace pipeproof::cuda
