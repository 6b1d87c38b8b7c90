#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and builds everything into build/ (binary: build/bin/pipeproof).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --build build -j "$(nproc)"
