#pragma once
// The small amount of linear algebra the classic baselines need: a dense SPD solve for the
// normal equations and a CSR matrix with conjugate-gradient ridge regression for TF-IDF.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/sparse_matrix.h"

namespace pricer::eval {

// Solves A x = b for a symmetric positive-definite n×n row-major A by Cholesky factorisation.
// Throws Error when A is not positive definite (e.g. collinear features without a ridge term).
std::vector<double> solve_spd(std::vector<double> a, std::vector<double> b, std::size_t n);

// y = X w
void spmv(const SparseMatrix& x, const std::vector<double>& w, std::vector<double>& y);
// w = Xᵀ r
void spmv_transposed(const SparseMatrix& x, const std::vector<double>& r, std::vector<double>& w);

struct RidgeModel {
  std::vector<double> weights;
  double intercept = 0.0;
  int iterations = 0;
};

// Minimises ||X w + b - y||² + alpha ||w||² (the intercept b unpenalised, as scikit-learn's Ridge)
// by conjugate gradients on the normal equations, never forming XᵀX. Stops when the residual
// norm falls below tol times its start, or after max_iter steps.
RidgeModel ridge_cg(const SparseMatrix& x, const std::vector<double>& y, double alpha, double tol = 1e-8,
                    int max_iter = 2000);

}  // namespace pricer::eval
