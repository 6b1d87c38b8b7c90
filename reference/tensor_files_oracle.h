// What the safetensors and .npy readers must do with any bytes at all, checked by the libFuzzer
// targets (fuzz/safetensors_fuzzer.cpp, fuzz/npy_fuzzer.cpp) and by the test that replays their
// corpora and findings: refuse them with an InputError, or read tensors that the matching writer
// writes back to the very same tensors. Anything else aborts.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "reference/tensor_files.h"
#include "schedule/errors.h"

namespace pipeproof::testing {

[[noreturn]] inline void OracleFails(const char* what) {
  std::fprintf(stderr, "tensor file oracle: %s\n", what);
  std::abort();
}

inline void CheckSafetensorsReader(std::string_view data) {
  SafetensorsFile file;
  try {
    file = ParseSafetensors(std::make_shared<const std::string>(data), "input");
  } catch (const InputError& e) {
    if (!IsPrintable(e.what())) OracleFails("an error echoed raw bytes of the input");
    return;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    OracleFails("the safetensors reader threw something else than InputError");
  }
  const SafetensorsFile again =
      ParseSafetensors(std::make_shared<const std::string>(WriteSafetensors(file)), "written");
  if (again.tensors.size() != file.tensors.size() || again.metadata != file.metadata)
    OracleFails("safetensors round trip changed the file");
  for (size_t i = 0; i < file.tensors.size(); ++i) {
    if (!SameTensor(file.tensors[i], again.tensors[i]))
      OracleFails("safetensors round trip changed a tensor");
  }
}

inline void CheckNpyReader(std::string_view data) {
  StoredTensor tensor;
  try {
    tensor = ParseNpy(std::make_shared<const std::string>(data), "input", "t");
  } catch (const InputError& e) {
    if (!IsPrintable(e.what())) OracleFails("an error echoed raw bytes of the input");
    return;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    OracleFails("the .npy reader threw something else than InputError");
  }
  const StoredTensor again =
      ParseNpy(std::make_shared<const std::string>(WriteNpy(tensor)), "written", "t");
  if (!SameTensor(tensor, again)) OracleFails(".npy round trip changed the tensor");
}

}  // namespace pipeproof::testing
