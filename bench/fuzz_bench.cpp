// How many property-suite-4 cases run per second: a small generated schedule (2 to 4 ranks, up
// to 3 x ranks microbatches) under a random legal fault plan, executed on the threads transport
// and compared bit for bit with the reference (fuzz/execution_properties_test.cpp, and every case
// of `pipeproof fuzz`). The rate (items_per_second) is wall-clock: injected delays are sleeps.
//   build/bin/fuzz_bench
#include <benchmark/benchmark.h>

#include "fuzz/campaign.h"

namespace pipeproof {
namespace {

DrawLimits SuiteFourLimits() {
  DrawLimits limits;
  limits.max_ranks = 4;
  limits.max_microbatches_per_rank = 3;
  limits.max_delay_mean_us = 150;
  return limits;
}

// Cases drawn as the campaign draws them; `no_delays` strips the delays, to show what the
// executor and the comparison cost alone.
void RunCases(benchmark::State& state, const DrawLimits& limits, bool no_delays) {
  std::unique_ptr<CaseRunner> runner = MakeThreadRunner();
  CaseSettings settings;
  settings.control_timeout_s = 0.2;
  int64_t number = 0, failures = 0;
  for (auto _ : state) {
    CampaignCase c = DrawCase(1, number++, limits);
    if (no_delays) c.faults.delay.reset();
    if (c.faults.corrupt == CorruptKind::kSwap) c.faults.corrupt = CorruptKind::kBitflip;  // fits any schedule
    failures += RunCase(*runner, c, CasePlan(c, settings), settings).failed();
  }
  if (failures > 0) state.SkipWithError("a case failed");
  state.SetItemsProcessed(state.iterations());
}

void BM_SuiteFourLegalFaults(benchmark::State& state) { RunCases(state, SuiteFourLimits(), false); }
BENCHMARK(BM_SuiteFourLegalFaults)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(5);

void BM_SuiteFourWithoutDelays(benchmark::State& state) { RunCases(state, SuiteFourLimits(), true); }
BENCHMARK(BM_SuiteFourWithoutDelays)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(5);

// Every case with a negative control: drops and kills wait out a 0.2 s watchdog.
void BM_SuiteFourNegativeControls(benchmark::State& state) {
  DrawLimits limits = SuiteFourLimits();
  limits.controls = 1;
  RunCases(state, limits, false);
}
BENCHMARK(BM_SuiteFourNegativeControls)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(5);

}  // namespace
}  // namespace pipeproof
