// The one-GPU streams transport against the sequential reference on the same GPU (issue 6):
// DualPipe, 8 ranks x 20 microbatches, every rank a thread with its own CUDA streams.
//   build/bin/streams_bench
// Per size (the reference example's: hidden 512, seq 256, micro-batch 3, f32; and a larger one):
//   - Reference: the sequential reference on one CudaDevice (what exact mode compares against);
//   - Pipelined: the streams execution, no faults; its counter `vs_reference` is its mean time
//     over the reference's (target: at most 1.10) and `exact` is 1 when a full RunAndCompare of the
//     same run matched the GPU reference bit for bit;
//   - HooksArmed: the same with a fault plan whose every hook is consulted but does nothing (zero
//     delays on every op and compute, identity posting orders): the cost of the fault-injection
//     hooks when they inject nothing (target: under 1% over Pipelined). The hooks are always
//     compiled in, so "off" is measured as "armed with nothing to do".
// Where there is no usable GPU it says so and exits 0 without measuring anything.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>

#include "exec/fault_draw.h"
#include "exec/streams_transport.h"
#include "reference/cuda_device.h"
#include "schedule/generate.h"

namespace pipeproof {
namespace {

ModelConfig Model(int hidden, int seq, int micro_batch_size) {
  ModelConfig c;
  c.shape = {hidden, seq, micro_batch_size};
  c.dtype = DType::kF32;
  return c;
}

const ModelConfig kExample = Model(512, 256, 3);
const ModelConfig kLarger = Model(1024, 1024, 2);

ExecOptions Exec(const ModelConfig& model) {
  ExecOptions exec;
  exec.model = model;
  exec.make_device = [](int) { return MakeCudaDevice(DType::kF32); };
  return exec;
}

double ReferenceSeconds(const Schedule& s, const ModelConfig& model) {
  const AccumulationOrder order = AccumulationOrderOf(s, AccumulationMode::kSchedule);
  auto device = MakeCudaDevice(model.dtype);
  double best = 1e30;
  for (int i = 0; i < 3; ++i) {  // the first also warms cuBLAS up
    const auto t0 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(RunReference(s, model, order, *device));
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

// Every hook consulted, none doing anything: delays drawn everywhere, then zeroed; orders kept.
FaultPlan ArmedButIdle(const RunPlan& plan, const ModelConfig& model) {
  FaultOptions o;
  o.seed = 1;
  o.delay = DelaySpec::Parse("uniform:100us");
  o.delay->ParseWhere("post,deliver,compute");
  FaultPlan p =
      DrawFaultPlan(plan, o, {int64_t{model.shape.Rows()} * model.shape.hidden, 23}, "bench");
  for (RankFaults& r : p.ranks) {
    for (auto* delays : {&r.post_delay_us, &r.deliver_delay_us, &r.compute_delay_us}) {
      std::fill(delays->begin(), delays->end(), 0u);
    }
    for (RankFaults::UnitOrder& u : r.unit_orders) {
      for (size_t k = 0; k < u.order.size(); ++k) u.order[k] = static_cast<int>(k);
    }
  }
  return p;
}

void Reference(benchmark::State& state, const ModelConfig& model) {
  const Schedule s = GenerateDualPipe(8, 20, true);
  const AccumulationOrder order = AccumulationOrderOf(s, AccumulationMode::kSchedule);
  auto device = MakeCudaDevice(model.dtype);
  benchmark::DoNotOptimize(RunReference(s, model, order, *device));  // warm-up
  for (auto _ : state) benchmark::DoNotOptimize(RunReference(s, model, order, *device));
}

void Pipelined(benchmark::State& state, const ModelConfig& model, bool armed) {
  const Schedule s = GenerateDualPipe(8, 20, true);
  const RunPlan plan = PlanRun(s);
  const FaultPlan faults = armed ? ArmedButIdle(plan, model) : FaultPlan{};
  const ExecOptions exec = Exec(model);
  auto world = MakeStreamsWorld();
  world->Execute(plan, faults, exec, {}, {});  // warm-up: cuBLAS, the pools
  double total = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    const Execution e = world->Execute(plan, faults, exec, {}, {});
    total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (e.end != Execution::End::kComplete) state.SkipWithError(e.headline.c_str());
  }
  if (state.iterations() > 0 && !armed) {
    state.counters["vs_reference"] =
        total / static_cast<double>(state.iterations()) / ReferenceSeconds(s, model);
    RunOptions o;
    o.exec = exec;
    o.faults = faults;
    o.schedule_name = "dualpipe";
    state.counters["exact"] = RunAndCompare(s, o, *world).status == RunStatus::kMatch ? 1 : 0;
  }
}

void BM_ReferenceExample(benchmark::State& state) { Reference(state, kExample); }
void BM_PipelinedExample(benchmark::State& state) { Pipelined(state, kExample, false); }
void BM_HooksArmedExample(benchmark::State& state) { Pipelined(state, kExample, true); }
void BM_ReferenceLarger(benchmark::State& state) { Reference(state, kLarger); }
void BM_PipelinedLarger(benchmark::State& state) { Pipelined(state, kLarger, false); }
void BM_HooksArmedLarger(benchmark::State& state) { Pipelined(state, kLarger, true); }

}  // namespace
}  // namespace pipeproof

int main(int argc, char** argv) {
  using namespace pipeproof;
  const CudaProbe probe = ProbeCuda();
  if (!probe.usable) {
    std::printf("streams_bench: no GPU here (%s); nothing measured\n", probe.why.c_str());
    return 0;
  }
  std::printf("streams_bench: %s\n", probe.name.c_str());
  for (auto [name, fn] :
       {std::pair{"DualPipe8x20/h512s256b3/reference", &BM_ReferenceExample},
        std::pair{"DualPipe8x20/h512s256b3/pipelined", &BM_PipelinedExample},
        std::pair{"DualPipe8x20/h512s256b3/hooks-armed", &BM_HooksArmedExample},
        std::pair{"DualPipe8x20/h1024s1024b2/reference", &BM_ReferenceLarger},
        std::pair{"DualPipe8x20/h1024s1024b2/pipelined", &BM_PipelinedLarger},
        std::pair{"DualPipe8x20/h1024s1024b2/hooks-armed", &BM_HooksArmedLarger}}) {
    benchmark::RegisterBenchmark(name, fn)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->MinTime(2.0);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
