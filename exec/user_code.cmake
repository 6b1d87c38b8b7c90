# Users' own code (DESIGN.md, "Users' own code"): NCCL call traces, the LD_PRELOAD interposer
# libpipeproof_nccl.so, the trace analyzer behind `pipeproof trace check`, and the stand-in NCCL
# that the tests run a pipeline program over. Included from exec/CMakeLists.txt.

# Traces: the one module that defines the format, for the interposer and every reader.
add_library(pipeproof_nccl_trace nccl_trace.cpp)
target_include_directories(pipeproof_nccl_trace PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(pipeproof_nccl_trace PUBLIC pipeproof_errors fmt::fmt)

# The analyzer: matching, hangs, and traces turned into schedules (the CLI verifies those).
add_library(pipeproof_trace_check trace_check.cpp)
target_include_directories(pipeproof_trace_check PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(pipeproof_trace_check
  PUBLIC pipeproof_nccl_trace pipeproof_schedule fmt::fmt
  PRIVATE nlohmann_json::nlohmann_json)
set_property(GLOBAL APPEND PROPERTY PIPEPROOF_CLI_LIBS pipeproof_trace_check)

pipeproof_test(nccl_trace_test
  SOURCES nccl_trace_test.cpp trace_check_test.cpp
  LIBS pipeproof_trace_check pipeproof_nccl_trace pipeproof_verify pipeproof_schedule
  TIMEOUT 60)

# The interposer. It needs no NCCL and no CUDA to build: it declares the NCCL calls it wraps
# (exec/nccl_api.h) and reaches CUDA through the driver, loaded at run time (exec/nccl_gpu.h).
# Where the build finds <nccl.h> it compiles against it, so that the compiler checks every
# wrapper against NCCL's own declarations.
#   PIPEPROOF_NCCL: AUTO (build it; use <nccl.h> when found), ON (<nccl.h> required), OFF.
set(PIPEPROOF_NCCL AUTO CACHE STRING "The NCCL interposer libpipeproof_nccl.so (AUTO|ON|OFF)")
if(NOT PIPEPROOF_NCCL STREQUAL "OFF")
  find_path(PIPEPROOF_NCCL_INCLUDE_DIR nccl.h
    HINTS ENV NCCL_HOME ENV CUDA_HOME PATH_SUFFIXES include
    PATHS /usr/local/cuda/include /usr/local/include /usr/include)
  find_path(PIPEPROOF_CUDA_RUNTIME_INCLUDE_DIR cuda_runtime.h
    HINTS ENV CUDA_HOME PATH_SUFFIXES include
    PATHS /usr/local/cuda/include /usr/include)
  set(PIPEPROOF_HAVE_NCCL_H OFF)
  if(PIPEPROOF_NCCL_INCLUDE_DIR AND PIPEPROOF_CUDA_RUNTIME_INCLUDE_DIR)
    set(PIPEPROOF_HAVE_NCCL_H ON)
  elseif(PIPEPROOF_NCCL STREQUAL "ON")
    message(FATAL_ERROR "PIPEPROOF_NCCL=ON: nccl.h and cuda_runtime.h not found (set NCCL_HOME/CUDA_HOME)")
  endif()

  add_library(pipeproof_nccl SHARED
    nccl_interposer.cpp
    nccl_gpu.cpp
    nccl_trace.cpp
    fault_plan.cpp
    ${PROJECT_SOURCE_DIR}/schedule/errors.cpp)
  target_include_directories(pipeproof_nccl PRIVATE ${PROJECT_SOURCE_DIR})
  # Only the wrapped NCCL calls leave the library; its C++ runtime and fmt stay inside it, so it
  # does not meet the program's own (a conda environment's libstdc++, say).
  set_target_properties(pipeproof_nccl PROPERTIES CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  # Preloaded, never dlopen()ed late: its thread-locals can live in the static TLS block, which
  # spares a __tls_get_addr call on every access in every wrapped call.
  target_compile_options(pipeproof_nccl PRIVATE -ftls-model=initial-exec)
  target_link_libraries(pipeproof_nccl PRIVATE
    fmt::fmt-header-only nlohmann_json::nlohmann_json Threads::Threads ${CMAKE_DL_LIBS})
  target_link_options(pipeproof_nccl PRIVATE
    -static-libstdc++ -static-libgcc -Wl,--exclude-libs,ALL -Wl,-z,defs
    -Wl,--version-script=${CMAKE_CURRENT_SOURCE_DIR}/nccl_interposer.map)
  set_target_properties(pipeproof_nccl PROPERTIES LINK_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/nccl_interposer.map)
  if(PIPEPROOF_HAVE_NCCL_H)
    target_compile_definitions(pipeproof_nccl PRIVATE PIPEPROOF_HAVE_NCCL_H)
    target_include_directories(pipeproof_nccl SYSTEM PRIVATE
      ${PIPEPROOF_NCCL_INCLUDE_DIR} ${PIPEPROOF_CUDA_RUNTIME_INCLUDE_DIR})
  endif()
  # Spin kernels and CUDA events where the program has a GPU; host sleeps and timestamps where
  # it has none. PIPEPROOF_CUDA=OFF leaves the GPU part out altogether.
  if(NOT PIPEPROOF_CUDA STREQUAL "OFF")
    target_compile_definitions(pipeproof_nccl PRIVATE PIPEPROOF_INTERPOSER_GPU)
  endif()
  message(STATUS "pipeproof: NCCL interposer (nccl.h ${PIPEPROOF_HAVE_NCCL_H}, GPU delays "
                 "${PIPEPROOF_CUDA})")

  # The stand-in NCCL (lib/standin/libnccl.so.2) and a DualPipe-style program over it.
  add_library(pipeproof_standin_nccl SHARED nccl_standin/standin_nccl.cpp)
  target_include_directories(pipeproof_standin_nccl PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(pipeproof_standin_nccl PRIVATE Threads::Threads)
  set_target_properties(pipeproof_standin_nccl PROPERTIES
    OUTPUT_NAME nccl SOVERSION 2 CXX_VISIBILITY_PRESET hidden
    LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/lib/standin)
  add_executable(nccl_pipeline_program nccl_standin/pipeline_program.cpp)
  target_link_libraries(nccl_pipeline_program PRIVATE
    pipeproof_exec pipeproof_schedule pipeproof_standin_nccl Threads::Threads)

  # `pipeproof inject` running the program over the stand-in, and `pipeproof trace check` on
  # what it recorded.
  pipeproof_test(nccl_inject_test
    SOURCES nccl_inject_test.cpp
    LIBS pipeproof_exec pipeproof_nccl_trace pipeproof_schedule nlohmann_json::nlohmann_json
    TIMEOUT 120)
  target_compile_definitions(nccl_inject_test PRIVATE
    PIPEPROOF_PIPELINE_PROGRAM="$<TARGET_FILE:nccl_pipeline_program>"
    PIPEPROOF_INTERPOSER="$<TARGET_FILE:pipeproof_nccl>"
    PIPEPROOF_STANDIN_NCCL="$<TARGET_FILE:pipeproof_standin_nccl>")
  add_dependencies(nccl_inject_test pipeproof pipeproof_nccl nccl_pipeline_program)
endif()

# The GPU side (CTest label `gpu`; each test skips, saying why, where there is no GPU): spin
# kernels and event times on the driver alone, and `pipeproof inject` over the real NCCL with a
# one-rank program that sends to itself (one GPU suffices).
if(NOT PIPEPROOF_NCCL STREQUAL "OFF" AND NOT PIPEPROOF_CUDA STREQUAL "OFF")
  find_library(PIPEPROOF_REAL_NCCL_LIBRARY nccl
    HINTS ENV NCCL_HOME ENV CUDA_HOME PATH_SUFFIXES lib lib64
    PATHS /usr/local/cuda/lib64 /usr/local/cuda/lib)
  pipeproof_test(nccl_gpu_test
    SOURCES nccl_gpu_test.cpp nccl_gpu.cpp
    LIBS pipeproof_nccl_trace ${CMAKE_DL_LIBS}
    LABELS gpu
    TIMEOUT 120)
  target_compile_definitions(nccl_gpu_test PRIVATE PIPEPROOF_INTERPOSER_GPU)
  add_dependencies(nccl_gpu_test pipeproof pipeproof_nccl)
  if(PIPEPROOF_HAVE_NCCL_H AND PIPEPROOF_REAL_NCCL_LIBRARY)
    add_executable(nccl_gpu_program nccl_gpu_program.cpp)
    target_include_directories(nccl_gpu_program SYSTEM PRIVATE
      ${PIPEPROOF_NCCL_INCLUDE_DIR} ${PIPEPROOF_CUDA_RUNTIME_INCLUDE_DIR})
    target_link_libraries(nccl_gpu_program PRIVATE ${PIPEPROOF_REAL_NCCL_LIBRARY} ${CMAKE_DL_LIBS})
    target_compile_definitions(nccl_gpu_test PRIVATE
      PIPEPROOF_NCCL_GPU_PROGRAM="$<TARGET_FILE:nccl_gpu_program>")
    add_dependencies(nccl_gpu_test nccl_gpu_program)
  else()
    target_compile_definitions(nccl_gpu_test PRIVATE PIPEPROOF_NCCL_GPU_PROGRAM="")
  endif()
endif()

# What the interposer costs per call (not a test): see exec/nccl_standin/overhead_bench.cpp.
if(TARGET pipeproof_standin_nccl)
  add_executable(nccl_overhead_bench nccl_standin/overhead_bench.cpp)
  target_include_directories(nccl_overhead_bench PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(nccl_overhead_bench PRIVATE pipeproof_standin_nccl)
endif()
