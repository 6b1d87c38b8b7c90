#!/usr/bin/env bash
# Sets up, builds, and runs every test: ctest (unit, property and integration tests), then a
# short reproducible run of each libFuzzer target (scripts/fuzz.sh). Fails if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
status=0
(cd build && ctest --output-on-failure -j "$(nproc)" "$@") || status=1
scripts/fuzz.sh --runs "${PIPEPROOF_FUZZ_RUNS:-20000}" || status=1
exit $status
