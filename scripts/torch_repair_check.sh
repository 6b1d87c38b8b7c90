#!/usr/bin/env bash
# `pipeproof repair` on schedules it has never seen: PyTorch's own runtime orders, dumped by
# scripts/torch_schedule.py for every multi-stage class at 2-4 ranks, 4-8 microbatches, with
# defer_pp_recv and max_outstanding_sends=1. Under each stream layout where `verify` finds one
# unsound, it is repaired, and the result is judged by scripts/runtime_model.py (written apart from
# pipeproof's code) with its compute order compared cell by cell. Prints one line per repair and a
# summary; exits 1 if any repair fails, is judged unsound, or changes a compute.
# Usage: scripts/torch_repair_check.sh PIPEPROOF_BINARY [WORK_DIR]
# Needs torch in $PIPEPROOF_PYTHON or python3 (a manual check, not part of scripts/test.sh).
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 PIPEPROOF_BINARY [WORK_DIR]" >&2
  exit 2
fi
pipeproof="$(realpath "$1")"
here="$(cd "$(dirname "$0")" && pwd)"
work="${2:-$(mktemp -d)}"
mkdir -p "$work"
cd "$work"
python="${PIPEPROOF_PYTHON:-python3}"
if ! "$python" -c 'import torch.distributed.pipelining' >/dev/null 2>&1; then
  echo "torch is not importable with $python (set PIPEPROOF_PYTHON)" >&2
  exit 2
fi

for cls in Interleaved1F1B LoopedBFS InterleavedZeroBubble ZBVZeroBubble DualPipeV; do
  for r in 2 3 4; do
    for m in 4 6 8; do
      for opt in "--defer-pp-recv" "--defer-pp-recv --max-outstanding-sends 1" "--max-outstanding-sends 1"; do
        f="$(echo "${cls}_${r}_${m}_${opt}" | tr ' -' '__').csv"
        [[ -f "$f.cmd" ]] && continue  # dumped by an earlier run into this WORK_DIR
        # PyTorch refuses some sizes and options (exit 3): those are not schedules.
        "$python" "$here/torch_schedule.py" "$cls" -r "$r" -m "$m" -v 2 $opt -o "$f" --print-command \
          > "$f.cmd" 2>/dev/null || rm -f "$f" "$f.cmd"
      done
    done
  done
done

failed=0 repaired=0 edits=0 relowered=0
for f in *.csv; do
  [[ $f == repaired_* ]] && continue
  flags="$(sed 's/^pipeproof verify [^ ]* //' "$f.cmd")"
  topology="$(grep -oE -- '--stages [0-9]+|--placement [^ ]+' <<<"$flags" | tr '\n' ' ')"
  for layout in rank pair edge; do
    if "$pipeproof" verify "$f" $flags --no-z3 --streams "$layout" >/dev/null 2>&1; then continue; fi
    out="repaired_${layout}_$f"
    "$pipeproof" repair "$f" $flags --streams "$layout" --json -o "$out" >"$out.json" 2>"$out.log" || {
      echo "FAIL $f --streams $layout: repair exited $?"; failed=$((failed + 1)); continue
    }
    read -r n relow < <("$python" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["edit_count"], d["relowered_edits"])' "$out.json")
    verdict="$("$python" "$here/runtime_model.py" "$out" $topology --layouts "$layout" --comm nccl --json |
      "$python" -c 'import json,sys; r=json.load(sys.stdin)["results"][0]; print("sound" if r["ok"] and not any("mix-up" in s for s in r["stuck"]) else r["verdict"])')"
    computes="$("$python" - "$f" "$out" <<'PY'
import csv, re, sys
def computes(path):
    return [[c for c in row if c and not re.search(r"SEND|RECV|^WAIT$", c)] for row in csv.reader(open(path))]
print("unchanged" if computes(sys.argv[1]) == computes(sys.argv[2]) else "CHANGED")
PY
)"
    echo "$f --streams $layout: $n edits (re-lowering: $relow), independent model: $verdict, computes $computes"
    repaired=$((repaired + 1)); edits=$((edits + n)); relowered=$((relowered + relow))
    [[ $verdict == sound && $computes == unchanged ]] || failed=$((failed + 1))
  done
done
echo "repaired $repaired schedule-layouts: $edits edits in all (re-lowering would change $relowered); $failed failed"
[[ $failed -eq 0 ]]
