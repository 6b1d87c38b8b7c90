// libFuzzer target: the safetensors reader on arbitrary bytes (see
// reference/tensor_files_oracle.h).
#include <cstddef>
#include <cstdint>

#include "reference/tensor_files_oracle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pipeproof::testing::CheckSafetensorsReader({reinterpret_cast<const char*>(data), size});
  return 0;
}
