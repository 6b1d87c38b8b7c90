// libFuzzer target: the fault-plan reader on arbitrary bytes (see plan_oracle.h).
#include <cstddef>
#include <cstdint>

#include "fuzz/plan_oracle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pipeproof::CheckPlanReader({reinterpret_cast<const char*>(data), size});
  return 0;
}
