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

# pipeproof_test(<name> SOURCES ... LIBS ... [LABELS ...] [TIMEOUT s] [ENVIRONMENT VAR=value ...]
#                [OWN_MAIN])
# One GoogleTest binary; every TEST in it becomes a CTest test. Tests labelled `property` run
# their RapidCheck properties with RC_PARAMS=${PIPEPROOF_RC_PARAMS}.
function(pipeproof_test name)
  cmake_parse_arguments(T "OWN_MAIN" "TIMEOUT" "SOURCES;LIBS;LABELS;ENVIRONMENT" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  if(T_OWN_MAIN)
    target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest)
  else()
    target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest_main)
  endif()
  target_compile_definitions(${name} PRIVATE
    PIPEPROOF_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    PIPEPROOF_TESTDATA_DIR="${PROJECT_SOURCE_DIR}/testdata"
    PIPEPROOF_BINARY="${CMAKE_BINARY_DIR}/bin/pipeproof")
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  if("property" IN_LIST T_LABELS)
    list(APPEND T_ENVIRONMENT "RC_PARAMS=${PIPEPROOF_RC_PARAMS}")
  endif()
  # Empty values would swallow the next property name: pass only what is set.
  set(props TIMEOUT ${T_TIMEOUT})
  if(T_LABELS)
    list(APPEND props LABELS "${T_LABELS}")
  endif()
  if(T_ENVIRONMENT)
    list(APPEND props ENVIRONMENT "${T_ENVIRONMENT}")
  endif()
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST PROPERTIES ${props})
endfunction()
