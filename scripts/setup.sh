#!/usr/bin/env bash
# Installs what pipeproof needs from Debian's packages (only what is missing; as root or through
# sudo), then configures the build in build/. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  cmake make g++ pkg-config
  libgtest-dev libgmock-dev librapidcheck-dev libbenchmark-dev
  libfmt-dev nlohmann-json3-dev libcli11-dev
  libopenblas-dev  # the CPU device's GEMMs (pulls in the pthreads build; pinned to one thread per call)
  libz3-dev
  libopenmpi-dev openmpi-bin
  clang libclang-rt-14-dev
  librsvg2-bin libxml2-utils chromium  # pictures: PNG through rsvg-convert; SVG and HTML report checks
  python3  # scripts/runtime_model.py, the independent model of PyTorch's runtime the tests compare with
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  if [[ $(id -u) -eq 0 ]]; then
    as_root=()
  elif command -v sudo >/dev/null; then
    as_root=(sudo)
  else
    echo "setup: need root or sudo to install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE="${PIPEPROOF_BUILD_TYPE:-Release}" ${PIPEPROOF_CMAKE_ARGS:-} >/dev/null
echo "setup: configured build/ ($(grep -o 'Z3=[A-Z]* RapidCheck=[A-Z]* MPI=[A-Z]*' build/CMakeCache.txt 2>/dev/null || true))"
