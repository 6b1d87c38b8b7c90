#!/usr/bin/env bash
# scripts/torch_schedule.py against the installed PyTorch: dump a handful of small schedules of
# every kind and check that `pipeproof verify` reads each one and that its deadlock verdict under
# --streams rank, pair and edge and --comm eager agrees with scripts/runtime_model.py (for a
# compute-only dump, on pipeproof's own lowering of it).
# Usage: scripts/torch_schedule_test.sh PIPEPROOF_BINARY
# Needs torch (with torch.distributed) in $PIPEPROOF_PYTHON or python3; without it, it prints one
# line starting "SKIP: torch is not importable here" and exits 0 (ctest reports it as skipped).
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 PIPEPROOF_BINARY" >&2
  exit 2
fi
pipeproof="$1"
here="$(cd "$(dirname "$0")" && pwd)"

python=""
for candidate in "${PIPEPROOF_PYTHON:-}" python3; do
  if [[ -n "$candidate" ]] && "$candidate" -c 'import torch.distributed.pipelining' >/dev/null 2>&1; then
    python="$candidate"
    break
  fi
done
if [[ -z "$python" ]]; then
  echo "SKIP: torch is not importable here (tried ${PIPEPROOF_PYTHON:+\$PIPEPROOF_PYTHON=$PIPEPROOF_PYTHON and }python3)"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
  echo "FAIL $*"
  failures=$((failures + 1))
}

# name | torch_schedule.py arguments | pipeproof exit status expected under --streams rank
cases=(
  "interleaved1f1b|Interleaved1F1B -r 2 -v 2 -m 4|0"
  "loopedbfs|LoopedBFS -r 3 -v 2 -m 3|0"
  "interleavedzb|InterleavedZeroBubble -r 4 -v 2 -m 8|0"
  "zbv|ZBVZeroBubble -r 4 -m 8|0"
  "dualpipev|DualPipeV -r 4 -m 8|0"
  "dualpipev_budget|DualPipeV -r 3 -m 6 --max-outstanding-sends 1|0"
  "gpipe_compute|GPipe -r 3 -m 3|0"
  "gpipe_lowered|GPipe -r 3 -m 3 --lower|0"
  # defer_pp_recv reorders the receives of a V placement's shared rank edges: PyTorch 2.15 writes
  # a schedule whose FIFO matching mixes activations and gradients (and deadlocks under rank).
  "dualpipev_defer|DualPipeV -r 4 -m 8 --defer-pp-recv|0,1"
)

for case in "${cases[@]}"; do
  IFS='|' read -r name args expected <<<"$case"
  csv="$work/$name.csv"
  # shellcheck disable=SC2086  # the arguments are words
  if ! command="$("$python" "$here/torch_schedule.py" $args -o "$csv" --print-command \
                  --pipeproof "$pipeproof" 2>"$work/$name.err")"; then
    fail "$name: torch_schedule.py $args: $(head -c 400 "$work/$name.err")"
    continue
  fi
  if [[ "$command" != "$pipeproof verify $csv --stages "*" --placement "*" --microbatches "* ]]; then
    fail "$name: unexpected command: $command"
    continue
  fi
  read -r -a words <<<"$command"
  for streams in rank pair edge; do
    status=0
    "${words[@]}" --streams "$streams" >"$work/$name.$streams.out" 2>&1 || status=$?
    if [[ $status -eq 2 ]]; then
      fail "$name: pipeproof refuses the file: $(head -c 400 "$work/$name.$streams.out")"
    elif [[ $streams == rank && ",$expected," != *",$status,"* ]]; then
      fail "$name: pipeproof verify --streams rank exits $status, expected $expected"
      sed -n '1,12p' "$work/$name.$streams.out"
    fi
  done
  # Compare the deadlock verdicts with the independent model (rank, pair, edge, eager). A
  # compute-only dump has no runtime order of its own: compare on pipeproof's lowering of it.
  topology=("${words[@]:3}")
  runtime="$csv"
  if ! grep -q -E 'SEND_|RECV_' "$csv"; then
    runtime="$work/$name.lowered.csv"
    if ! "$pipeproof" convert "$csv" --lower --to csv "${topology[@]}" -o "$runtime" \
         >"$work/$name.lower.out" 2>&1; then
      fail "$name: pipeproof convert --lower: $(head -c 400 "$work/$name.lower.out")"
      continue
    fi
  fi
  if ! "$python" "$here/runtime_model.py" "$runtime" --compare "$pipeproof" "${topology[@]}" \
       >"$work/$name.model" 2>&1; then
    fail "$name: runtime_model.py and pipeproof disagree:"
    cat "$work/$name.model"
  else
    echo "ok   $name ($args): $(grep -E '^(nccl|eager)' "$work/$name.model" | awk '{print $1 "=" $2}' | paste -sd' ')"
  fi
done

if [[ $failures -ne 0 ]]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "all torch schedules read and verified"
