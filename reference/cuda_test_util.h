// For gpu-labelled tests: a machine without a usable GPU skips them (and says
// why) instead of failing, so the whole suite passes on CPU-only CI.
#pragma once

#include <gtest/gtest.h>

#include "reference/cuda_device.h"

#define SKIP_WITHOUT_GPU()                                                     \
  do {                                                                         \
    const ::pipeproof::CudaProbe probe = ::pipeproof::ProbeCuda();             \
    if (!probe.usable)                                                         \
      GTEST_SKIP() << "no GPU here: " << probe.why;                            \
  } while (0)
