# NCCL, for the interposer (usercode/) and the NCCL transport (exec/). Neither links NCCL at build
# time: the interposer declares the calls it wraps (usercode/nccl_api.h) and the transport
# dlopen()s libnccl. Where the build finds <nccl.h> both compile against it, so that the compiler
# checks every wrapper against NCCL's own declarations.
#   PIPEPROOF_NCCL: AUTO (build the interposer; use <nccl.h> when found), ON (<nccl.h> required),
#   OFF (no interposer).
# Sets PIPEPROOF_HAVE_NCCL_H, and the cache paths PIPEPROOF_NCCL_INCLUDE_DIR,
# PIPEPROOF_CUDA_RUNTIME_INCLUDE_DIR and (with CUDA not OFF) PIPEPROOF_REAL_NCCL_LIBRARY.
set(PIPEPROOF_NCCL AUTO CACHE STRING "The NCCL interposer libpipeproof_nccl.so (AUTO|ON|OFF)")
set(PIPEPROOF_HAVE_NCCL_H OFF)
if(NOT PIPEPROOF_NCCL STREQUAL "OFF")
  find_path(PIPEPROOF_NCCL_INCLUDE_DIR nccl.h
    HINTS ENV NCCL_HOME ENV CUDA_HOME PATH_SUFFIXES include
    PATHS /usr/local/cuda/include /usr/local/include /usr/include)
  find_path(PIPEPROOF_CUDA_RUNTIME_INCLUDE_DIR cuda_runtime.h
    HINTS ENV CUDA_HOME PATH_SUFFIXES include
    PATHS /usr/local/cuda/include /usr/include)
  if(PIPEPROOF_NCCL_INCLUDE_DIR AND PIPEPROOF_CUDA_RUNTIME_INCLUDE_DIR)
    set(PIPEPROOF_HAVE_NCCL_H ON)
  elseif(PIPEPROOF_NCCL STREQUAL "ON")
    message(FATAL_ERROR "PIPEPROOF_NCCL=ON: nccl.h and cuda_runtime.h not found (set NCCL_HOME/CUDA_HOME)")
  endif()
  # The real libnccl: the GPU tests' program links it; the NCCL transport dlopen()s it from there.
  if(NOT PIPEPROOF_CUDA STREQUAL "OFF")
    find_library(PIPEPROOF_REAL_NCCL_LIBRARY nccl
      HINTS ENV NCCL_HOME ENV CUDA_HOME PATH_SUFFIXES lib lib64
      PATHS /usr/local/cuda/lib64 /usr/local/cuda/lib)
  endif()
endif()
