// libFuzzer target: the .npy reader on arbitrary bytes (see reference/tensor_files_oracle.h).
#include <cstddef>
#include <cstdint>

#include "reference/tensor_files_oracle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pipeproof::testing::CheckNpyReader({reinterpret_cast<const char*>(data), size});
  return 0;
}
