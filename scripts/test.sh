#!/usr/bin/env bash
# Sets up, builds, and runs every test: ctest (unit, property and integration tests), then a
# short reproducible run of each libFuzzer target (scripts/fuzz.sh). Fails if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
status=0
(cd build && ctest --output-on-failure -j "$(nproc)" "$@") || status=1
# The property suites' case counts ("[ property ] Suite.Name: OK, passed N cases in T s"): ctest
# keeps every test's output in its log, passing or not.
grep -h '^\[ property \]' build/Testing/Temporary/LastTest.log 2>/dev/null || true
scripts/fuzz.sh --runs "${PIPEPROOF_FUZZ_RUNS:-20000}" || status=1
exit $status
