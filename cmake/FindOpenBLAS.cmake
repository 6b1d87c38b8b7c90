# OpenBLAS with its CBLAS interface, for the CPU device's matrix products (reference/cpu_blas.cpp).
# Makes OpenBLAS::OpenBLAS. pkg-config's openblas.pc, where there is one, says which of Debian's
# builds is the system's choice (openblas-pthread, -openmp or -serial, picked by
# update-alternatives); the header and the library are then taken from that same build, so that
# cblas.h and openblas_config.h describe the library actually linked. Without pkg-config the
# search looks in Debian's per-build folders too (e.g. a prefix carried by scripts/gpu_carry.sh).
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(PC_OpenBLAS QUIET openblas)
endif()
set(_openblas_suffixes openblas-pthread openblas-openmp openblas-serial openblas)
find_path(OpenBLAS_INCLUDE_DIR NAMES openblas_config.h
  HINTS ${PC_OpenBLAS_INCLUDE_DIRS} PATH_SUFFIXES ${_openblas_suffixes})
find_library(OpenBLAS_LIBRARY NAMES openblas
  HINTS ${PC_OpenBLAS_LIBRARY_DIRS} PATH_SUFFIXES ${_openblas_suffixes})
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(OpenBLAS REQUIRED_VARS OpenBLAS_LIBRARY OpenBLAS_INCLUDE_DIR
  VERSION_VAR PC_OpenBLAS_VERSION)
if(OpenBLAS_FOUND AND NOT TARGET OpenBLAS::OpenBLAS)
  add_library(OpenBLAS::OpenBLAS UNKNOWN IMPORTED)
  set_target_properties(OpenBLAS::OpenBLAS PROPERTIES
    IMPORTED_LOCATION "${OpenBLAS_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${OpenBLAS_INCLUDE_DIR}")
endif()
