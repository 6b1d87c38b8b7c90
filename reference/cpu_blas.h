// The CPU device's matrix products: OpenBLAS through its CBLAS interface, one thread per call.
// reference/cpu_blas.cpp says why the results are the same bits on every call with the same
// shapes, whichever thread makes it; docs/design.md ("The CPU device's products") says how the
// tests guard that and the products' correctness.
#pragma once

#include <string>

namespace pipeproof {

// c[m, n] = op(a) op(b), all row-major: op(a) = trans_a ? a^T : a is [m, k], op(b) is [k, n],
// and lda, ldb, ldc are the row strides of a, b and c as stored. c is overwritten, never read
// (beta = 0), so whatever the buffer held, a poisoned NaN included, cannot reach the result.
// T is double or float. Throws std::logic_error for a negative size or a stride shorter than
// its matrix's row (the BLAS would only print a message and leave c as it was).
template <class T>
void BlasGemm(bool trans_a, bool trans_b, int m, int n, int k, const T* a, int lda, const T* b,
              int ldb, T* c, int ldc);

extern template void BlasGemm<double>(bool, bool, int, int, int, const double*, int, const double*,
                                      int, double*, int);
extern template void BlasGemm<float>(bool, bool, int, int, int, const float*, int, const float*, int,
                                     float*, int);

// "OpenBLAS 0.3.21 ... Cooperlake ..., pthreads build, kernels for Cooperlake, 1 thread per
// call": which library, build and kernels this process computes with.
std::string BlasDescription();
// Threads OpenBLAS may use for one call: 1, as it is pinned when it is opened.
int BlasThreadsPerCall();
// Opens OpenBLAS now, pinned to one thread per call (else the first product does).
void PinBlasThreads();

}  // namespace pipeproof
