// Verification speed (issue 3): the simulation-based verify of DualPipe and DualPipeV with 64
// ranks and 1024 microbatches, the same with the Z3 proof, and the Z3 proof alone for DualPipe
// at 8, 16 and 32 ranks (M = 4R). PyTorch-style runtime orders (1F1B and interleaved 1F1B
// lowered, a WAIT_SEND for every SEND) under each stream layout, where the layouts change the
// work: lone SEND/RECVs on per-stream queues, and the pair layout's set-ups. Counters: actions
// and actions per second.
//   build-verify/bin/verify_bench                       everything (the 64-rank Z3 runs take
//   minutes) build-verify/bin/verify_bench --benchmark_filter=Z3Proof

#include <benchmark/benchmark.h>

#include "schedule/generate.h"
#include "verify/internal.h"
#include "verify/verify.h"

namespace pipeproof {
namespace {

Schedule Make(const std::string& kind, int ranks, int microbatches) {
  return Generate({.kind = kind, .ranks = ranks, .microbatches = microbatches});
}

void Count(benchmark::State& state, const Schedule& s) {
  state.counters["actions"] = static_cast<double>(s.ActionCount());
  state.counters["actions/s"] = benchmark::Counter(static_cast<double>(s.ActionCount()),
                                                   benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Verify(benchmark::State& state, const std::string& kind, bool z3) {
  const Schedule s = Make(kind, static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  VerifyOptions options;
  options.use_z3 = z3;
  for (auto _ : state) {
    const VerifyReport r = Verify(s, options);
    if (!r.ok) state.SkipWithError("the schedule did not verify");
  }
  Count(state, s);
}

void BM_Z3Proof(benchmark::State& state) {
  const int ranks = static_cast<int>(state.range(0));
  const Schedule s = Make("dualpipe", ranks, 4 * ranks);
  const RouteIndex routes(s);
  const auto messages = verify_internal::MatchMessages(s, routes);
  if (!HaveZ3()) {
    state.SkipWithError("built without Z3");
    return;
  }
  const verify_internal::SimulationResult sim;  // a search does not read the simulation
  verify_internal::ProofRequest search;
  search.search = true;
  for (auto _ : state) {
    const auto verdict = verify_internal::ProveDeadlockVerdict(s, routes, messages, CommModel::kNccl,
                                                               StreamLayout::kRank, sim, search);
    if (verdict.verdict.outcome != ProofVerdict::Outcome::kDeadlockFree) state.SkipWithError("Z3 found no timing");
  }
  Count(state, s);
}

void BM_Simulation(benchmark::State& state) {
  const int ranks = static_cast<int>(state.range(0));
  const Schedule s = Make("dualpipe", ranks, 4 * ranks);
  const RouteIndex routes(s);
  const auto messages = verify_internal::MatchMessages(s, routes);
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        verify_internal::RunSimulation(s, routes, messages, CommModel::kNccl, Costs{}));
  }
  Count(state, s);
}

// Without Z3: 1F1B with 32 ranks and 256 microbatches and interleaved 1F1B (2 stages per rank)
// with 16 and 256, as PyTorch's runtime writes them (WAIT_SENDs), under --streams rank, pair,
// edge (the benchmark's argument).
void BM_RuntimeOrder(benchmark::State& state, const std::string& kind, int ranks, int microbatches) {
  const StreamLayout streams = static_cast<StreamLayout>(state.range(0));
  const Schedule s = Generate(
      {.kind = kind, .ranks = ranks, .microbatches = microbatches, .wait_sends = true});
  VerifyOptions options;
  options.use_z3 = false;
  options.streams = streams;
  for (auto _ : state) {
    const VerifyReport r = Verify(s, options);
    if (!r.ok) state.SkipWithError("the schedule did not verify");
  }
  state.SetLabel(std::string(StreamLayoutName(streams)));
  Count(state, s);
}

BENCHMARK_CAPTURE(BM_RuntimeOrder, 1f1b_32x256, std::string("1f1b"), 32, 256)
    ->DenseRange(0, 2)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_RuntimeOrder, interleaved_16x256, std::string("interleaved-1f1b"), 16, 256)
    ->DenseRange(0, 2)
    ->Unit(benchmark::kMillisecond);

BENCHMARK_CAPTURE(BM_Verify, dualpipe_simulation, std::string("dualpipe"), false)
    ->Args({64, 1024})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Verify, dualpipev_simulation, std::string("dualpipev"), false)
    ->Args({64, 1024})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Simulation)->Arg(8)->Arg(16)->Arg(32)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Z3Proof)->Arg(8)->Arg(16)->Arg(32)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK_CAPTURE(BM_Verify, dualpipe_z3, std::string("dualpipe"), true)
    ->Args({64, 1024})
    ->Unit(benchmark::kSecond)
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_Verify, dualpipev_z3, std::string("dualpipev"), true)
    ->Args({64, 1024})
    ->Unit(benchmark::kSecond)
    ->Iterations(1);

}  // namespace
}  // namespace pipeproof
