#!/usr/bin/env bash
# Packs what a GPU machine without network may lack into .gpu-carry/ (a CMake prefix, about 40
# MiB): the header-only nlohmann-json and CLI11, Google Benchmark (for bench/streams_bench), each
# with its CMake package files, and OpenBLAS, copied from this machine's Debian packages.
# scripts/gpu_check.sh uses .gpu-carry/ when it is there. Run it here, then carry `.gpu-carry` to the GPU machine
# (the device tool's `carry`), e.g.:
#   scripts/gpu_carry.sh        # here
#   scripts/gpu_check.sh        # there, with .gpu-carry carried
set -euo pipefail
cd "$(dirname "$0")/.."
out=.gpu-carry
rm -rf "$out"
copy() {  # copy PATH...: each into $out at the same place below /usr
  for path in "$@"; do
    [[ -e "$path" ]] || { echo "gpu_carry: $path is missing (run scripts/setup.sh first)" >&2; exit 1; }
    mkdir -p "$out/$(dirname "${path#/usr/}")"
    cp -a "$path" "$out/${path#/usr/}"
  done
}
arch_lib=/usr/lib/x86_64-linux-gnu
copy /usr/include/nlohmann /usr/share/cmake/nlohmann_json
copy /usr/include/CLI /usr/share/cmake/CLI11
copy /usr/include/benchmark "$arch_lib/cmake/benchmark" "$arch_lib"/libbenchmark.so* \
  "$arch_lib/libbenchmark_main.a"
# OpenBLAS (the CPU device's GEMMs, which the CUDA build links too): the pthreads build's headers
# and shared library, where cmake/FindOpenBLAS.cmake looks below a prefix, and the Fortran runtime
# it needs (about 40 MiB in all).
copy /usr/include/x86_64-linux-gnu/openblas-pthread "$arch_lib"/openblas-pthread/libopenblas*.so* \
  "$arch_lib"/libgfortran.so.5* "$arch_lib"/libquadmath.so.0*
echo "gpu_carry: $(du -sh "$out" | cut -f1) in $out (nlohmann-json, CLI11, Google Benchmark, OpenBLAS)"
