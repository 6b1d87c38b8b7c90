// How fast tensor dumps are read and compared as the tensor count grows: reading must stay
// linear in the tensors of a safetensors header (200k tensors, a large model's sharded
// checkpoint, in well under a second).
//   build/bin/reference_bench
#include <benchmark/benchmark.h>

#include "reference/tensor_diff.h"
#include "reference/tensor_files.h"

namespace pipeproof {
namespace {

std::string ManyTensors(int count) {
  SafetensorsFile file;
  for (int i = 0; i < count; ++i) {
    file.tensors.push_back(MakeTensor("layers." + std::to_string(i) + ".w", ElementType::kF32, {2},
                                      RawBytes(std::vector<float>{1.0f, 2.0f})));
  }
  return WriteSafetensors(file);
}

void BM_ReadSafetensors(benchmark::State& state) {
  const auto bytes = std::make_shared<const std::string>(ManyTensors(static_cast<int>(state.range(0))));
  for (auto _ : state) benchmark::DoNotOptimize(ParseSafetensors(bytes, "bench"));
  state.counters["tensors"] = static_cast<double>(state.range(0));
}
BENCHMARK(BM_ReadSafetensors)->Arg(10000)->Arg(40000)->Arg(200000)->Unit(benchmark::kMillisecond);

void BM_DiffSafetensors(benchmark::State& state) {
  const auto bytes = std::make_shared<const std::string>(ManyTensors(static_cast<int>(state.range(0))));
  TensorDump dump;
  dump.path = "bench";
  dump.tensors = ParseSafetensors(bytes, "bench").tensors;
  for (auto _ : state) benchmark::DoNotOptimize(DiffTensors(dump, dump, {}));
}
BENCHMARK(BM_DiffSafetensors)->Arg(10000)->Arg(200000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace pipeproof
