# pipeproof_optional_package(<Package> <option var> <suffix> [find_package args...])
# Sets PIPEPROOF_HAVE_<suffix> to ON when the package is wanted and found.
function(pipeproof_optional_package pkg option suffix)
  set(PIPEPROOF_HAVE_${suffix} OFF PARENT_SCOPE)
  if(${option} STREQUAL "OFF")
    return()
  endif()
  if(${option} STREQUAL "ON")
    find_package(${pkg} ${ARGN} REQUIRED)
  else()
    find_package(${pkg} ${ARGN} QUIET)
  endif()
  if(${pkg}_FOUND)
    set(PIPEPROOF_HAVE_${suffix} ON PARENT_SCOPE)
  endif()
endfunction()

# pipeproof_test(<name> SOURCES ... LIBS ... [LABELS ...] [TIMEOUT s])
# One GoogleTest binary; every TEST in it becomes a CTest test.
function(pipeproof_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest_main)
  target_compile_definitions(${name} PRIVATE
    PIPEPROOF_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    PIPEPROOF_TESTDATA_DIR="${PROJECT_SOURCE_DIR}/testdata"
    PIPEPROOF_BINARY="${CMAKE_BINARY_DIR}/bin/pipeproof")
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST
    PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT})
endfunction()
