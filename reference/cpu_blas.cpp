// Why the products are deterministic (exact mode compares the pipelined run with the reference bit
// for bit, and both call these products from different threads at different times):
//
//  - One thread per call. Every pipeline rank is already a thread calling the device, so OpenBLAS
//    is pinned to one thread (openblas_set_num_threads(1), once, before the first product). Its
//    GEMM interface then runs the whole call on the caller's thread: either the small-matrix
//    kernel or the blocked single-thread driver, never a split of the work among pool threads,
//    so nothing depends on how many threads exist or which one calls. Debian's default build
//    (libopenblas0-pthread, what libopenblas-dev pulls in) locks its own shared state, the pool
//    of packing buffers, so concurrent calls are safe; single-threaded calls also skip the lock
//    that serialises multi-threaded level-3 calls, so the ranks' products run side by side. The
//    serial build would do as well only if built with USE_LOCKING, which we cannot check.
//  - Same shapes, same arithmetic. The kernels for this CPU are chosen once, when the library is
//    loaded (DYNAMIC_ARCH; see BlasDescription()), for the whole process. Given those kernels, the
//    path of a call (small-matrix kernel or blocked driver), the blocking of k into panels and the
//    register tiling depend only on m, n, k and the transposes (alpha and beta are always 1 and
//    0). So every output element gets the same sequence of multiplies, fused multiply-adds and
//    adds over k in every call with the same shapes: the same bits. The kernels' fused
//    multiply-adds do not matter for exactness (both sides run the same ones); -ffp-contract=off
//    is for the device's own C++ loops, which the compiler might otherwise contract differently
//    in different places.
//  - Where the operands lie does not matter. The blocked driver first copies (packs) panels of a
//    and b into its own aligned buffers and the kernels read only those; the small-matrix kernels
//    read the operands in place with unaligned loads, in a fixed order. (The device's tensors are
//    64-byte aligned anyway.)
//  - c is never read (beta = 0), so a reused buffer's old contents, poison included, cannot leak.
//
// reference/cpu_device_test.cpp checks each claim that can be checked: the same bits from many
// threads at once as from one, from misaligned copies of the operands, and into a poisoned
// buffer. What is not promised: the same bits on another CPU model (other kernels are chosen) or
// another OpenBLAS version. Ranks in other processes (the MPI transport) on different CPU models
// can be held to one kernel set with OPENBLAS_CORETYPE (e.g. OPENBLAS_CORETYPE=Haswell).
#include "reference/cpu_blas.h"

#include <cblas.h>
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <type_traits>

#include "reference/shared_library.h"

namespace pipeproof {
namespace {

// OpenBLAS, opened at the first product rather than linked: loaded with the program, its pthread
// build starts a thread per core that spins for a while, a core's worth of CPU on every command
// (verify, generate, ...) whether it computes or not. The functions come from the same header
// that declares them, so every call through them is checked by the compiler.
struct OpenBlas {
  decltype(&cblas_dgemm) dgemm = nullptr;
  decltype(&cblas_sgemm) sgemm = nullptr;
  decltype(&openblas_set_num_threads) set_num_threads = nullptr;
  decltype(&openblas_get_num_threads) get_num_threads = nullptr;
  decltype(&openblas_get_parallel) get_parallel = nullptr;
  decltype(&openblas_get_config) get_config = nullptr;
  decltype(&openblas_get_corename) get_corename = nullptr;
};

const OpenBlas& Blas() {
  static const OpenBlas blas = [] {
    const std::filesystem::path built = PIPEPROOF_OPENBLAS_LIBRARY;  // where the build found it
    void* library = OpenSharedLibrary(built.filename().string(), built.parent_path().string());
    if (!library) library = OpenSharedLibrary("libopenblas.so.0", built.parent_path().string());
    if (!library) {
      const char* why = dlerror();
      throw std::runtime_error(fmt::format("the CPU device cannot load OpenBLAS ({}): {}", built.string(),
                                           why ? why : "not found"));
    }
    OpenBlas b;
    const bool bound = BindSymbol(library, b.dgemm, "cblas_dgemm") && BindSymbol(library, b.sgemm, "cblas_sgemm") &&
                       BindSymbol(library, b.set_num_threads, "openblas_set_num_threads") &&
                       BindSymbol(library, b.get_num_threads, "openblas_get_num_threads") &&
                       BindSymbol(library, b.get_parallel, "openblas_get_parallel") &&
                       BindSymbol(library, b.get_config, "openblas_get_config") &&
                       BindSymbol(library, b.get_corename, "openblas_get_corename");
    if (!bound) throw std::runtime_error(fmt::format("{} is not an OpenBLAS with CBLAS", built.string()));
    b.set_num_threads(1);  // one thread per call: see above
    return b;
  }();
  return blas;
}

}  // namespace

void PinBlasThreads() { (void)Blas(); }

int BlasThreadsPerCall() { return Blas().get_num_threads(); }

std::string BlasDescription() {
  const OpenBlas& blas = Blas();
  const int parallel = blas.get_parallel();
  const char* build = parallel == 0 ? "serial" : parallel == 1 ? "pthreads" : "OpenMP";
  const int threads = BlasThreadsPerCall();
  return fmt::format("{}, {} build, kernels for {}, {} thread{} per call", blas.get_config(), build,
                     blas.get_corename(), threads, threads == 1 ? "" : "s");
}

template <class T>
void BlasGemm(bool trans_a, bool trans_b, int m, int n, int k, const T* a, int lda, const T* b,
              int ldb, T* c, int ldc) {
  // The BLAS's own argument check only prints a message and returns with c untouched.
  const int a_cols = trans_a ? m : k, b_cols = trans_b ? k : n;
  if (m < 0 || n < 0 || k < 0 || lda < std::max(1, a_cols) || ldb < std::max(1, b_cols) ||
      ldc < std::max(1, n)) {
    throw std::logic_error(fmt::format("BlasGemm: m {} n {} k {} with strides {} {} {}", m, n, k,
                                       lda, ldb, ldc));
  }
  const OpenBlas& blas = Blas();
  const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, double>) {
    blas.dgemm(CblasRowMajor, ta, tb, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc);
  } else {
    static_assert(std::is_same_v<T, float>);
    blas.sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
  }
}

template void BlasGemm<double>(bool, bool, int, int, int, const double*, int, const double*, int,
                               double*, int);
template void BlasGemm<float>(bool, bool, int, int, int, const float*, int, const float*, int,
                              float*, int);

}  // namespace pipeproof
