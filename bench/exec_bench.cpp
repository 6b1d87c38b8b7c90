// How fast the executor and the sequential reference run, and what the executor costs over the
// reference where compute dominates.
//   build/bin/exec_bench
// The whole command (generate + verify + run + compare), threads and MPI, is timed from the shell:
//   time build/bin/pipeproof run --kind dualpipe -r 8 -m 20
//   time mpirun --allow-run-as-root --oversubscribe -np 8 build/bin/pipeproof run --transport mpi --kind dualpipe -r 8 -m 20
#include <benchmark/benchmark.h>

#include "exec/fault_draw.h"
#include "exec/run.h"
#include "reference/cpu_device.h"
#include "schedule/generate.h"

namespace pipeproof {
namespace {

ModelConfig Model(int hidden, int seq, int micro_batch_size) {
  ModelConfig c;
  c.shape = {hidden, seq, micro_batch_size};
  return c;
}

const ModelConfig kDefault = Model(ModelShape{}.hidden, ModelShape{}.seq, ModelShape{}.micro_batch_size);
// Large enough that the GEMMs dominate: about 50 MFLOP per stage and microbatch.
const ModelConfig kComputeBound = Model(128, 32, 2);

// The executor alone: every rank as a thread, both passes, results gathered.
void Execute(benchmark::State& state, const Schedule& s, const ModelConfig& model, const FaultOptions& faults) {
  const RunPlan plan = PlanRun(s);
  const FaultPlan fault_plan = DrawFaultPlan(plan, faults, {int64_t{model.shape.Rows()} * model.shape.hidden, 52}, s.kind);
  ExecOptions exec;
  exec.model = model;
  auto world = MakeThreadWorld();
  int64_t peak = 0;
  for (auto _ : state) {
    Execution e = world->Execute(plan, fault_plan, exec, {}, {});
    if (e.end != Execution::End::kComplete) state.SkipWithError(e.headline.c_str());
    for (const RankResult& r : e.ranks) peak = std::max(peak, r.memory.peak_bytes);
  }
  state.counters["peak_bytes_per_rank"] = static_cast<double>(peak);
}

void Reference(benchmark::State& state, const Schedule& s, const ModelConfig& model) {
  const AccumulationOrder order = AccumulationOrderOf(s, AccumulationMode::kSchedule);
  for (auto _ : state) {
    auto device = MakeCpuDevice(model.dtype);
    benchmark::DoNotOptimize(RunReference(s, model, order, *device));
  }
}

void BM_ThreadsDualPipe8x20(benchmark::State& state) {
  Execute(state, GenerateDualPipe(8, 20, true), kDefault, {});
}
BENCHMARK(BM_ThreadsDualPipe8x20)->Unit(benchmark::kMillisecond)->UseRealTime();

// The legal faults that cost nothing by themselves (no delays): poisoning and shuffles.
void BM_ThreadsDualPipe8x20PoisonShuffle(benchmark::State& state) {
  FaultOptions f;
  f.poison = true;
  f.shuffle = true;
  Execute(state, GenerateDualPipe(8, 20, true), kDefault, f);
}
BENCHMARK(BM_ThreadsDualPipe8x20PoisonShuffle)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_ReferenceDualPipe8x20(benchmark::State& state) { Reference(state, GenerateDualPipe(8, 20, true), kDefault); }
BENCHMARK(BM_ReferenceDualPipe8x20)->Unit(benchmark::kMillisecond);

// What `pipeproof run` does after verification: execute, reference, compare.
void BM_RunAndCompareDualPipe8x20(benchmark::State& state) {
  const Schedule s = GenerateDualPipe(8, 20, true);
  RunOptions o;
  o.exec.model = kDefault;
  o.schedule_name = "dualpipe";
  auto world = MakeThreadWorld();
  for (auto _ : state) {
    if (RunAndCompare(s, o, *world).status != RunStatus::kMatch) state.SkipWithError("mismatch");
  }
}
BENCHMARK(BM_RunAndCompareDualPipe8x20)->Unit(benchmark::kMillisecond)->UseRealTime();

// Executor overhead where compute dominates. One rank: the same work as the reference, plus
// everything the executor adds (planning, buffers, recorder, the inference pass's extra
// forwards). Two ranks on this machine's two cores: what pipelining buys.
void BM_ComputeBoundThreads1F1B1x8(benchmark::State& state) {
  Execute(state, Generate({.kind = "1f1b", .ranks = 1, .microbatches = 8}), kComputeBound, {});
}
BENCHMARK(BM_ComputeBoundThreads1F1B1x8)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_ComputeBoundReference1F1B1x8(benchmark::State& state) {
  Reference(state, Generate({.kind = "1f1b", .ranks = 1, .microbatches = 8}), kComputeBound);
}
BENCHMARK(BM_ComputeBoundReference1F1B1x8)->Unit(benchmark::kMillisecond);

void BM_ComputeBoundThreadsDualPipe2x8(benchmark::State& state) {
  Execute(state, GenerateDualPipe(2, 8, true), kComputeBound, {});
}
BENCHMARK(BM_ComputeBoundThreadsDualPipe2x8)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_ComputeBoundReferenceDualPipe2x8(benchmark::State& state) {
  Reference(state, GenerateDualPipe(2, 8, true), kComputeBound);
}
BENCHMARK(BM_ComputeBoundReferenceDualPipe2x8)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace pipeproof

