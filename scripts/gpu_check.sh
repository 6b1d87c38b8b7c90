#!/usr/bin/env bash
# The GPU parts on a machine with one (or more) NVIDIA GPUs, sm_90 (H100/H200) by default, in one
# go: build only what the checks need (Z3 and RapidCheck off, CUDA required) into build-gpucheck/,
# run the gpu-labelled tests, then `pipeproof run` and `pipeproof fuzz` on the GPU as a user
# would, then the streams benchmark. Prints a summary; exits 1 if any check failed.
#
#   scripts/gpu_check.sh            everything (about 5-8 minutes on an H100/H200 box)
#   GPU_CHECK_BENCH=0 ...           without the benchmark
#   GPU_CHECK_ARCH=80 ...           another architecture (default 90)
# A GPU machine without nlohmann-json, CLI11 or Google Benchmark (and no network) takes them from
# .gpu-carry/: run scripts/gpu_carry.sh where they are installed and carry that folder along.
set -uo pipefail
cd "$(dirname "$0")/.."
build=build-gpucheck
jobs="$(nproc)"
failures=()
step() { echo; echo "=== $*"; }
expect() {  # expect STATUS NAME COMMAND...: runs COMMAND, which must exit with STATUS
  local want="$1" name="$2"
  shift 2
  echo "\$ $*"
  "$@"
  local got=$?
  if [[ $got -ne $want ]]; then
    echo "FAILED: $name (exit $got, expected $want)"
    failures+=("$name")
  else
    echo "ok: $name (exit $got)"
  fi
}

step "GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo "(no nvidia-smi)"

step "configure and build ($build, CUDA on, Z3 and RapidCheck off)"
# What the GPU machine lacks (no network there) comes from .gpu-carry/, made by scripts/gpu_carry.sh.
prefix=()
if [[ -d .gpu-carry ]]; then
  prefix=(-DCMAKE_PREFIX_PATH="$PWD/.gpu-carry")
  export LD_LIBRARY_PATH="$PWD/.gpu-carry/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPIPEPROOF_CUDA=ON -DPIPEPROOF_Z3=OFF \
  -DPIPEPROOF_RAPIDCHECK=OFF -DPIPEPROOF_CUDA_ARCHITECTURES="${GPU_CHECK_ARCH:-90}" "${prefix[@]}" \
  >"$build.configure.log" 2>&1 ||
  { cat "$build.configure.log"; echo "FAILED: configure"; exit 1; }
grep "pipeproof:" "$build.configure.log"
targets=(pipeproof cuda_device_test streams_transport_test campaign_gpu_test nccl_run_command_test nccl_gpu_test
  inject_gpu_command_test nccl_transport_test)
if [[ -f /usr/include/benchmark/benchmark.h || -f /usr/local/include/benchmark/benchmark.h ||
      -f .gpu-carry/include/benchmark/benchmark.h ]]; then
  targets+=(streams_bench)
fi
cmake --build "$build" -j "$jobs" --target "${targets[@]}" 2>&1 | tail -3
[[ ${PIPESTATUS[0]} -eq 0 ]] || { echo "FAILED: build"; exit 1; }
pp="$build/bin/pipeproof"

step "gpu-labelled tests"
(cd "$build" && ctest -L gpu -j 4 --output-on-failure --timeout 900) 2>&1 | tee "$build.ctest.log"
[[ ${PIPESTATUS[0]} -eq 0 ]] || failures+=("ctest -L gpu")
# On a GPU machine only the multi-GPU NCCL test may skip (on a one-GPU machine).
if grep "(Skipped)" "$build.ctest.log" | grep -v "RunUnderMpirunWithAGpuPerRank"; then
  echo "FAILED: gpu tests were skipped on a GPU machine"
  failures+=("gpu tests skipped")
fi

step "pipeproof run --device cuda"
ex="--hidden 512 --seq 256 --micro-batch-size 3"
expect 0 "dualpipe 8x20 f32 exact, example size" \
  "$pp" run --device cuda --dtype f32 --kind dualpipe -r 8 -m 20 $ex
expect 0 "dualpipe 8x20 under delays, stragglers, shuffles, poisoning" \
  "$pp" run --device cuda --dtype f32 --kind dualpipe -r 8 -m 20 $ex --delay exp:200us --straggler 3:2 --shuffle --poison --seed 7
expect 0 "dualpipev 4x12 bf16 under faults" \
  "$pp" run --device cuda --dtype bf16 --kind dualpipev -r 4 -m 12 $ex --delay heavy:100us --shuffle --poison --seed 8
expect 1 "bitflip caught" "$pp" run --device cuda --dtype f32 --kind dualpipe -r 4 -m 8 --corrupt bitflip --seed 9 -q
expect 3 "dropped message ends as a hang with the dump" \
  "$pp" run --device cuda --dtype f32 --kind dualpipe -r 4 -m 8 --corrupt drop --seed 9 --timeout 2 -q
# A race: each run may or may not show it; three tries.
raced=0
for seed in 1 2 3; do
  env PIPEPROOF_PLANTED_BUG=skip-compute-event "$pp" run --device cuda --dtype f32 --kind dualpipe -r 4 -m 8 \
    $ex --poison --seed "$seed" -q
  if [[ $? -eq 1 ]]; then raced=1; break; fi
done
if [[ $raced -eq 1 ]]; then
  echo "ok: planted missing compute event shows as a mismatch"
else
  echo "FAILED: planted missing compute event went unnoticed in 3 runs"
  failures+=("skip-compute-event unnoticed")
fi

gpus="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')"
if [[ "$gpus" -ge 2 ]] && command -v mpirun >/dev/null; then
  step "pipeproof run --transport nccl ($gpus GPUs, one rank each)"
  n=$(( gpus >= 8 ? 8 : (gpus >= 4 ? 4 : 2) ))
  expect 0 "dualpipe ${n}x$((2 * n)) over NCCL under faults" \
    scripts/launch.sh "$n" "$pp" run --transport nccl --device cuda --dtype f32 --kind dualpipe -r "$n" \
    -m $((2 * n)) $ex --delay exp:200us --shuffle --poison --seed 5
else
  echo "(one GPU: the NCCL transport's multi-rank run needs two or more; one rank under mpirun here)"
  if command -v mpirun >/dev/null; then
    expect 0 "one rank over NCCL under mpirun (world set-up, id broadcast)" \
      scripts/launch.sh 1 "$pp" run --transport nccl --device cuda --dtype f32 --kind 1f1b -r 1 -m 4 $ex
  fi
fi

step "pipeproof fuzz --device cuda"
out="$(mktemp -d)"
expect 0 "clean GPU campaign" "$pp" fuzz --device cuda --dtype f32 -n 30 --seed 2 --controls 0.2 -q --out "$out"
expect 1 "planted skip-compute-event found" \
  "$pp" fuzz --device cuda --dtype f32 --hidden 64 --seq 32 --plant skip-compute-event -n 40 --seed 1 -q --out "$out"

if [[ "${GPU_CHECK_BENCH:-1}" != 0 && -x "$build/bin/streams_bench" ]]; then
  step "streams benchmark (vs_reference target <= 1.10; hooks-armed within 1% of pipelined)"
  "$build/bin/streams_bench" || failures+=("streams_bench")
fi

step "summary"
if [[ ${#failures[@]} -eq 0 ]]; then
  echo "all GPU checks passed"
  exit 0
fi
printf 'FAILED: %s\n' "${failures[@]}"
exit 1
