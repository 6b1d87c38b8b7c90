#!/usr/bin/env bash
# Sets up, builds, and runs every test (ctest). Exit status: ctest's.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
cd build
ctest --output-on-failure -j "$(nproc)" "$@"
