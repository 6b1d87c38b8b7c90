#!/usr/bin/env bash
# Builds the libFuzzer targets (pps, csv, json: the schedule readers; plan: the fault-plan reader;
# safetensors, npy: the tensor-dump readers; nccl_trace: the NCCL trace reader)
# with clang, AddressSanitizer and UndefinedBehaviorSanitizer in build-fuzz/, then runs each on
# its seed corpus (fuzz/corpus/<target>), for SECONDS (default 60) or, with --runs N, for N
# inputs from a fixed seed (reproducible: what scripts/test.sh does). Default: every target.
# A crash, leak, sanitizer report, timeout or oracle violation fails the run; the input that
# caused it is copied to fuzz/regressions/<reader>/ so the ordinary tests replay it forever.
#   scripts/fuzz.sh [SECONDS | --runs N] [TARGET...]     e.g. scripts/fuzz.sh 3600 csv
set -euo pipefail
cd "$(dirname "$0")/.."
limit=(-max_total_time="${1:-60}")
if [[ "${1:-}" == "--runs" ]]; then
  limit=(-runs="$2" -seed=1)
  shift 2
elif (($#)); then
  shift
fi
targets=("$@")
((${#targets[@]})) || targets=(pps csv json plan safetensors npy nccl_trace)

san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPIPEPROOF_FUZZERS=ON -DPIPEPROOF_Z3=OFF -DPIPEPROOF_MPI=OFF -DPIPEPROOF_RAPIDCHECK=OFF \
  -DPIPEPROOF_CUDA=OFF -DCMAKE_CXX_FLAGS="$san -fsanitize=fuzzer-no-link" \
  -DCMAKE_EXE_LINKER_FLAGS="$san" >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target "${targets[@]/%/_fuzzer}"

status=0
for t in "${targets[@]}"; do
  work=build-fuzz/work/$t
  rm -rf "$work/artifacts"
  mkdir -p "$work/corpus" "$work/artifacts"
  echo "== fuzz $t (${limit[*]})"
  if ! UBSAN_OPTIONS=print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
      "build-fuzz/bin/${t}_fuzzer" "${limit[@]}" -timeout=10 -rss_limit_mb=2048 \
      -max_len=65536 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
      "$work/corpus" "fuzz/corpus/$t" >"$work/log" 2>&1; then
    status=1
    echo "fuzz $t: FAILED (log: $work/log)"
    tail -n 30 "$work/log"
    mkdir -p "fuzz/regressions/$t"
    for a in "$work"/artifacts/{crash,leak,timeout,oom}-*; do
      [[ -f "$a" ]] && cp "$a" "fuzz/regressions/$t/" && echo "saved fuzz/regressions/$t/$(basename "$a")"
    done
  else
    grep -E "stat::number_of_executed_units|cov:" "$work/log" | tail -n 2
  fi
done
exit $status
