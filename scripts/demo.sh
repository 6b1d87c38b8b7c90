#!/usr/bin/env bash
# The main job on an embedded default: DualPipe with 8 ranks and 20 microbatches.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh >/dev/null
pp=build/bin/pipeproof
out=${PIPEPROOF_DEMO_DIR:-build/demo}
mkdir -p "$out"

echo "== generate: DualPipe, 8 ranks, 20 microbatches -> $out/dualpipe-8x20.pps"
$pp generate dualpipe --ranks 8 --microbatches 20 -o "$out/dualpipe-8x20.pps"
echo
echo "== show"
$pp show "$out/dualpipe-8x20.pps"
