// libFuzzer target: the json reader on arbitrary bytes (see reader_oracle.h).
#include <cstddef>
#include <cstdint>

#include "fuzz/reader_oracle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pipeproof::CheckReader(pipeproof::Format::kJson,
                         {reinterpret_cast<const char*>(data), size});
  return 0;
}
