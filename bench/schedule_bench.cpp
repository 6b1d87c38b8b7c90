// How fast schedules are generated, written, read and lowered, at the sizes people run.
//   build/bin/schedule_bench
#include <benchmark/benchmark.h>

#include "schedule/formats.h"
#include "schedule/generate.h"
#include "schedule/lower.h"

namespace pipeproof {
namespace {

void BM_GenerateDualPipe(benchmark::State& state) {
  const int ranks = static_cast<int>(state.range(0)), mbs = static_cast<int>(state.range(1));
  for (auto _ : state) benchmark::DoNotOptimize(GenerateDualPipe(ranks, mbs, true));
  state.counters["actions"] = static_cast<double>(GenerateDualPipe(ranks, mbs, true).ActionCount());
}
BENCHMARK(BM_GenerateDualPipe)->Args({8, 20})->Args({32, 128})->Unit(benchmark::kMicrosecond);

void BM_ReadPps(benchmark::State& state) {
  const std::string text = WritePps(GenerateDualPipe(32, 128, true));
  for (auto _ : state) benchmark::DoNotOptimize(ParsePps(text, "bench.pps"));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_ReadPps)->Unit(benchmark::kMillisecond);

void BM_ReadJson(benchmark::State& state) {
  const std::string text = WriteJson(GenerateDualPipe(32, 128, true));
  for (auto _ : state) benchmark::DoNotOptimize(ParseJson(text, "bench.json"));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_ReadJson)->Unit(benchmark::kMillisecond);

void BM_ReadCsv(benchmark::State& state) {
  const std::string text = WriteCsv(GenerateDualPipe(32, 128, true), false);
  TopologyOptions topology;
  topology.kind = "dualpipe";
  for (auto _ : state) benchmark::DoNotOptimize(ParseCsv(text, "bench.csv", topology));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_ReadCsv)->Unit(benchmark::kMillisecond);

void BM_Lower(benchmark::State& state) {
  GenerateOptions o{"zb1p", static_cast<int>(state.range(0)), static_cast<int>(state.range(1))};
  o.with_comm = false;
  const Schedule compute = Generate(o);
  for (auto _ : state) benchmark::DoNotOptimize(Lower(compute));
}
BENCHMARK(BM_Lower)->Args({8, 32})->Args({32, 128})->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace pipeproof
