#include "eval/linalg.h"

#include <cmath>

#include "core/error.h"

namespace pricer::eval {

std::vector<double> solve_spd(std::vector<double> a, std::vector<double> b, std::size_t n) {
  require(a.size() == n * n && b.size() == n, "solve_spd: shape mismatch");
  // In-place Cholesky: the lower triangle of a becomes L with A = L Lᵀ.
  for (std::size_t j = 0; j < n; ++j) {
    double d = a[j * n + j];
    for (std::size_t k = 0; k < j; ++k) d -= a[j * n + k] * a[j * n + k];
    require(d > 0.0 && std::isfinite(d), "solve_spd: matrix is not positive definite");
    const double ljj = std::sqrt(d);
    a[j * n + j] = ljj;
    for (std::size_t i = j + 1; i < n; ++i) {
      double s = a[i * n + j];
      for (std::size_t k = 0; k < j; ++k) s -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = s / ljj;
    }
  }
  for (std::size_t i = 0; i < n; ++i) {  // L z = b
    double s = b[i];
    for (std::size_t k = 0; k < i; ++k) s -= a[i * n + k] * b[k];
    b[i] = s / a[i * n + i];
  }
  for (std::size_t i = n; i-- > 0;) {  // Lᵀ x = z
    double s = b[i];
    for (std::size_t k = i + 1; k < n; ++k) s -= a[k * n + i] * b[k];
    b[i] = s / a[i * n + i];
  }
  return b;
}

void spmv(const SparseMatrix& x, const std::vector<double>& w, std::vector<double>& y) {
  y.assign(x.rows, 0.0);
  for (std::size_t r = 0; r < x.rows; ++r) {
    double s = 0.0;
    for (std::size_t p = x.indptr[r]; p < x.indptr[r + 1]; ++p) s += x.values[p] * w[x.indices[p]];
    y[r] = s;
  }
}

void spmv_transposed(const SparseMatrix& x, const std::vector<double>& r, std::vector<double>& w) {
  w.assign(x.cols, 0.0);
  for (std::size_t row = 0; row < x.rows; ++row) {
    const double v = r[row];
    for (std::size_t p = x.indptr[row]; p < x.indptr[row + 1]; ++p) w[x.indices[p]] += x.values[p] * v;
  }
}

RidgeModel ridge_cg(const SparseMatrix& x, const std::vector<double>& y, double alpha, double tol, int max_iter) {
  require(y.size() == x.rows && x.rows > 0, "ridge: need one target per row");
  require(alpha > 0.0, "ridge: alpha must be positive");
  const std::size_t m = x.cols;
  const double n = static_cast<double>(x.rows);
  // Unknowns are (w, b); the system is [[XᵀX + αI, Xᵀ1], [1ᵀX, n]] (w, b) = (Xᵀy, Σy).
  auto apply = [&](const std::vector<double>& w, double b, std::vector<double>& out_w, double& out_b) {
    std::vector<double> xw;
    spmv(x, w, xw);
    double sum = 0.0;
    for (auto& v : xw) {
      v += b;
      sum += v;
    }
    spmv_transposed(x, xw, out_w);
    for (std::size_t j = 0; j < m; ++j) out_w[j] += alpha * w[j];
    out_b = sum;
  };
  RidgeModel model;
  model.weights.assign(m, 0.0);
  double ysum = 0.0;
  for (double v : y) ysum += v;
  // Starting from b = mean(y) leaves CG only the part the features explain.
  model.intercept = ysum / n;
  std::vector<double> r_w, ap_w;
  double r_b = 0.0, ap_b = 0.0;
  spmv_transposed(x, y, r_w);
  {
    std::vector<double> a0;
    double a0b = 0.0;
    apply(model.weights, model.intercept, a0, a0b);
    for (std::size_t j = 0; j < m; ++j) r_w[j] -= a0[j];
    r_b = ysum - a0b;
  }
  std::vector<double> p_w = r_w;
  double p_b = r_b;
  auto dot = [&](const std::vector<double>& a, double ab, const std::vector<double>& b, double bb) {
    double s = ab * bb;
    for (std::size_t j = 0; j < m; ++j) s += a[j] * b[j];
    return s;
  };
  double rr = dot(r_w, r_b, r_w, r_b);
  const double stop = tol * tol * std::max(rr, 1e-300);
  for (model.iterations = 0; model.iterations < max_iter && rr > stop; ++model.iterations) {
    apply(p_w, p_b, ap_w, ap_b);
    const double step = rr / dot(p_w, p_b, ap_w, ap_b);
    for (std::size_t j = 0; j < m; ++j) {
      model.weights[j] += step * p_w[j];
      r_w[j] -= step * ap_w[j];
    }
    model.intercept += step * p_b;
    r_b -= step * ap_b;
    const double rr_next = dot(r_w, r_b, r_w, r_b);
    const double beta = rr_next / rr;
    for (std::size_t j = 0; j < m; ++j) p_w[j] = r_w[j] + beta * p_w[j];
    p_b = r_b + beta * p_b;
    rr = rr_next;
  }
  return model;
}

}  // namespace pricer::eval
