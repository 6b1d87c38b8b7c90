// The CPU device's three products as it computed them before it called a BLAS: plain loops, each
// output element summed over the inner index in increasing order from +0 (an axpy per row). Tests
// only: the independent oracle that every product the device now gets from OpenBLAS is compared
// with, to catch a wrong transpose, stride or operand order in the BLAS calls. The BLAS sums in
// another order and with fused multiply-adds, so the comparison allows for rounding, and no more:
// see WithinRounding.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

namespace pipeproof::testing {

// y[n][o] = sum_i x[n][i] w[o][i] (y = x w^T). w is transposed first so the inner loop runs along o.
template <class T>
std::vector<T> OracleLinearForward(const std::vector<T>& x, const std::vector<T>& w, int n, int in,
                                   int out) {
  std::vector<T> wt(static_cast<size_t>(in) * out), y(static_cast<size_t>(n) * out, T(0));
  for (int o = 0; o < out; ++o) {
    for (int i = 0; i < in; ++i) wt[size_t(i) * out + o] = w[size_t(o) * in + i];
  }
  for (int r = 0; r < n; ++r) {
    for (int i = 0; i < in; ++i) {
      for (int o = 0; o < out; ++o) y[size_t(r) * out + o] += x[size_t(r) * in + i] * wt[size_t(i) * out + o];
    }
  }
  return y;
}

// gx[n][i] = sum_o gy[n][o] w[o][i] (gx = gy w).
template <class T>
std::vector<T> OracleLinearInputGrad(const std::vector<T>& gy, const std::vector<T>& w, int n, int out,
                                     int in) {
  std::vector<T> gx(static_cast<size_t>(n) * in, T(0));
  for (int r = 0; r < n; ++r) {
    for (int o = 0; o < out; ++o) {
      for (int i = 0; i < in; ++i) gx[size_t(r) * in + i] += gy[size_t(r) * out + o] * w[size_t(o) * in + i];
    }
  }
  return gx;
}

// gw[o][i] = sum_n gy[n][o] x[n][i] (gw = gy^T x).
template <class T>
std::vector<T> OracleLinearWeightGrad(const std::vector<T>& gy, const std::vector<T>& x, int n, int out,
                                      int in) {
  std::vector<T> gw(static_cast<size_t>(out) * in, T(0));
  for (int o = 0; o < out; ++o) {
    for (int r = 0; r < n; ++r) {
      for (int i = 0; i < in; ++i) gw[size_t(o) * in + i] += gy[size_t(r) * out + o] * x[size_t(r) * in + i];
    }
  }
  return gw;
}

template <class T>
std::vector<T> Abs(std::vector<T> v) {
  for (T& e : v) e = std::abs(e);
  return v;
}

struct OracleCheck {
  int64_t outside = 0;  // elements farther from the oracle than rounding allows
  std::string first;    // the first of them, described
};

// A product of inner length k, computed in any order, with or without fused multiply-adds, is
// within k u (|A| |B|) of the exact one per element (u = eps / 2, to first order); two such
// products are within 2 k u = k eps of each other. `magnitude` is |A| |B| (the oracle on the
// operands' absolute values); the bound is doubled for the rounding of `magnitude` itself and of
// the bound's higher-order terms. A wrong transpose or stride is off by about the size of the
// elements themselves, far outside.
template <class T>
OracleCheck WithinRounding(const std::vector<T>& got, const std::vector<T>& want,
                           const std::vector<T>& magnitude, int k) {
  OracleCheck check;
  const double eps = std::numeric_limits<T>::epsilon();
  if (got.size() != want.size()) {
    check.outside = static_cast<int64_t>(std::max(got.size(), want.size()));
    check.first = "sizes differ";
    return check;
  }
  for (size_t i = 0; i < got.size(); ++i) {
    const double bound = 2.0 * k * eps * magnitude[i] + std::numeric_limits<T>::denorm_min();
    const double diff = std::abs(double{got[i]} - double{want[i]});
    if (!(diff <= bound)) {
      if (check.outside++ == 0) {
        char text[160];
        std::snprintf(text, sizeof text, "element %zu: got %.17g, oracle %.17g, allowed difference %.3g", i,
                      double{got[i]}, double{want[i]}, bound);
        check.first = text;
      }
    }
  }
  return check;
}

}  // namespace pipeproof::testing
