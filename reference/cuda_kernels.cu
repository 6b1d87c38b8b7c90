#include <cuda_bf16.h>

#include "reference/cuda_kernels.h"

namespace pipeproof::cuda {
namespace {

constexpr int kThreads = 256;
// The loss's reduction always runs as one block of this many threads, whatever the size: the
// order of the additions, and so the bits of the loss, never depend on the GPU or its load.
constexpr int kReduceThreads = 1024;
constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;

__device__ float Load(const float* p, int64_t i) { return p[i]; }
__device__ float Load(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ void Store(float* p, int64_t i, float v) { p[i] = v; }
__device__ void Store(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }

int Blocks(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

template <class T>
__global__ void Gelu(const T* h, T* a, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float v = Load(h, i);
    Store(a, i, 0.5f * v * (1.0f + erff(v * kInvSqrt2)));
  }
}

template <class T>
__global__ void GeluBackward(const T* h, const T* ga, T* gh, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float v = Load(h, i);
    const float cdf = 0.5f * (1.0f + erff(v * kInvSqrt2));
    const float pdf = expf(-0.5f * v * v) * kInvSqrt2Pi;
    Store(gh, i, Load(ga, i) * (cdf + v * pdf));
  }
}

template <class T>
__global__ void MseGrad(const T* y, const T* label, T* gy, int64_t n, float scale) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    Store(gy, i, (Load(y, i) - Load(label, i)) * scale);
  }
}

// Thread t sums elements t, t + 1024, ... in increasing order; then a fixed pairwise tree.
template <class T>
__global__ void MseSum(const T* y, const T* label, T* loss, int64_t n) {
  __shared__ float partial[kReduceThreads];
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += kReduceThreads) {
    const float d = Load(y, i) - Load(label, i);
    sum += d * d;
  }
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int stride = kReduceThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) Store(loss, 0, partial[0] / static_cast<float>(n));
}

template <class T>
__global__ void AddInPlace(T* acc, const T* t, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    Store(acc, i, Load(acc, i) + Load(t, i));
  }
}

__global__ void FlipBit32(uint32_t* t, int64_t element, int bit) { t[element] ^= 1u << bit; }
__global__ void FlipBit16(uint16_t* t, int64_t element, int bit) {
  t[element] = static_cast<uint16_t>(t[element] ^ (1u << bit));
}

__global__ void Spin(uint64_t ns) {
  uint64_t start, now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (now - start < ns);
}

// Runs `launch` with the element type `e` names.
template <class Launch>
cudaError_t Dispatch(Elem e, Launch launch) {
  if (e == Elem::kF32) {
    launch(float{});
  } else {
    launch(__nv_bfloat16{});
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchGelu(Elem e, const void* h, void* a, int64_t n, cudaStream_t s) {
  return Dispatch(e, [&](auto zero) {
    using T = decltype(zero);
    Gelu<T><<<Blocks(n), kThreads, 0, s>>>(static_cast<const T*>(h), static_cast<T*>(a), n);
  });
}

cudaError_t LaunchGeluBackward(Elem e, const void* h, const void* ga, void* gh, int64_t n,
                               cudaStream_t s) {
  return Dispatch(e, [&](auto zero) {
    using T = decltype(zero);
    GeluBackward<T><<<Blocks(n), kThreads, 0, s>>>(
        static_cast<const T*>(h), static_cast<const T*>(ga), static_cast<T*>(gh), n);
  });
}

cudaError_t LaunchMseLoss(Elem e, const void* y, const void* label, void* loss, void* gy, int64_t n,
                          cudaStream_t s) {
  return Dispatch(e, [&](auto zero) {
    using T = decltype(zero);
    const float scale = 2.0f / static_cast<float>(n);
    MseGrad<T><<<Blocks(n), kThreads, 0, s>>>(
        static_cast<const T*>(y), static_cast<const T*>(label), static_cast<T*>(gy), n, scale);
    MseSum<T><<<1, kReduceThreads, 0, s>>>(static_cast<const T*>(y), static_cast<const T*>(label),
                                           static_cast<T*>(loss), n);
  });
}

cudaError_t LaunchAddInPlace(Elem e, void* acc, const void* t, int64_t n, cudaStream_t s) {
  return Dispatch(e, [&](auto zero) {
    using T = decltype(zero);
    AddInPlace<T><<<Blocks(n), kThreads, 0, s>>>(static_cast<T*>(acc), static_cast<const T*>(t), n);
  });
}

cudaError_t LaunchFlipBit(Elem e, void* t, int64_t element, int bit, cudaStream_t s) {
  if (e == Elem::kF32) {
    FlipBit32<<<1, 1, 0, s>>>(static_cast<uint32_t*>(t), element, bit);
  } else {
    FlipBit16<<<1, 1, 0, s>>>(static_cast<uint16_t*>(t), element, bit);
  }
  return cudaGetLastError();
}

cudaError_t LaunchSpin(uint64_t ns, cudaStream_t s) {
  Spin<<<1, 1, 0, s>>>(ns);
  return cudaGetLastError();
}

}  // namespace pipeproof::cuda
