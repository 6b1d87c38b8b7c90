#!/usr/bin/env bash
# pipeproof's deadlock verdicts against scripts/runtime_model.py, an independent model of
# PyTorch's pipeline runtime written from PyTorch's source (no torch needed): every committed
# PyTorch runtime order, the deadlock fixtures that use the default routes, and pipeproof's own
# generated schedules with and without PyTorch's WAIT_SENDs, under --streams rank, pair and edge
# and --comm eager. Any verdict that differs fails the test.
# Usage: scripts/runtime_model_test.sh PIPEPROOF_BINARY
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 PIPEPROOF_BINARY" >&2
  exit 2
fi
pipeproof="$1"
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

files=("$root"/testdata/peers/pytorch/torch-2.15/*_runtime.csv
       "$root"/testdata/peers/pytorch/torch-2.15/generated/*_runtime.csv
       "$root"/testdata/verify/pytorch_172668*.pps
       "$root"/testdata/verify/pair_setup_deadlock.pps)
for spec in "dualpipe -r 4 -m 8" "dualpipev -r 3 -m 7 --no-overlap" "1f1b -r 4 -m 8 --wait-sends" \
            "interleaved-1f1b -r 3 -m 6 --wait-sends" "zb1p -r 4 -m 8 --wait-sends" \
            "gpipe -r 3 -m 4"; do
  out="$work/$(echo "$spec" | tr ' ' '_').csv"
  # shellcheck disable=SC2086  # the spec is words
  "$pipeproof" generate $spec --format csv -o "$out"
  files+=("$out")
done

failures=0
for f in "${files[@]}"; do
  topology=()
  case "$f" in
    *dualpipe_*) topology=(--kind dualpipe) ;;
  esac
  if ! python3 "$root/scripts/runtime_model.py" "$f" "${topology[@]}" --compare "$pipeproof" \
      >"$work/out" 2>&1; then
    echo "DIFFERS: $f"
    cat "$work/out"
    failures=$((failures + 1))
  fi
done
echo "runtime_model_test: ${#files[@]} schedules, $failures with a differing verdict"
((failures == 0))
