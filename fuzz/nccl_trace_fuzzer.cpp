// libFuzzer target: the NCCL trace reader on arbitrary bytes (see usercode/nccl_trace_oracle.h).
#include <cstddef>
#include <cstdint>

#include "usercode/nccl_trace_oracle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pipeproof::testing::CheckTraceReader({reinterpret_cast<const char*>(data), size});
  return 0;
}
