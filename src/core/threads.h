#pragma once
// The single threads setting. Every parallel region (OpenMP in our kernels and in oneDNN's GEMMs)
// uses the count set here, so results are reproducible for a given count.

namespace pricer {

void set_threads(int n);  // n <= 0: all hardware threads
int threads();

}  // namespace pricer
